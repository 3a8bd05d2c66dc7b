"""Independent reference: run a darknet model with OpenCV 4.x's own importer.

OpenCV 4.x is a test-only dependency installed beside the venv (``.venv/opencv4``) because it and
the runtime's OpenCV 5 both provide ``cv2``; the tests run this file in a subprocess with that
folder first on ``PYTHONPATH``.

    python tests/opencv4_reference.py CFG WEIGHTS BLOB.npy OUT.npz
"""

import sys

import cv2
import numpy as np


def main(cfg, weights, blob_path, out_path):
    assert cv2.__version__.startswith("4."), cv2.__version__
    net = cv2.dnn.readNetFromDarknet(cfg, weights)
    net.setPreferableBackend(cv2.dnn.DNN_BACKEND_OPENCV)
    net.setPreferableTarget(cv2.dnn.DNN_TARGET_CPU)
    blob = np.load(blob_path)
    net.setInput(blob)
    names = net.getUnconnectedOutLayersNames()
    outs = net.forward(names)
    np.savez(out_path, version=cv2.__version__, **{f"out{i}": o for i, o in enumerate(outs)})


if __name__ == "__main__":
    main(*sys.argv[1:5])
