"""The README's picture of one clock found at each scale, from the project's evaluation set.

    python -m bench.scale_examples --out docs/img/scales.jpg

Renders the evaluation set when it is missing (``clockwork.training.evalset``: eval-family clock faces on
scikit-image photographs, with perspective, blur, grain and lighting), detects each clock clip at the
default settings, in order, until one per scale is found, and draws that clip's best frame with its boxes
(``clockwork.remix.annotate``) into a 2 x 2 grid. It prints how many clips it tried per scale: the picture shows
what is found, the recall table in docs/records/ shows how often.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import cv2
import numpy as np

from clockwork.detect.detector import Detector
from clockwork.remix.annotate import BoxAnnotator, frame_at
from clockwork.timeline.pipeline import detect_video
from clockwork.training.evalset import SCALES, EvalItem, score_clip, write_evalset

TILE = (640, 360)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--evalset", default="var/evalset")
    ap.add_argument("--out", default="docs/img/scales.jpg")
    args = ap.parse_args()
    root = Path(args.evalset)
    if not (root / "manifest.json").is_file():
        write_evalset(root)
    items = [EvalItem(**i) for i in json.loads((root / "manifest.json").read_text())["items"]]
    detector = Detector(device="cpu")
    tiles = []
    for scale in SCALES:
        tried = 0
        for item in (i for i in items if i.scale == scale and i.kind == "clock"):
            tried += 1
            result = detect_video(root / item.name, detector=detector)
            if not score_clip(item, result)["found"]:
                continue
            best = max(result.frame_data, key=lambda f: f.best_score("clock"))
            image = BoxAnnotator(show_time=False).annotate(
                frame_at(root / item.name, best.timestamp_s), best.detections
            )
            tile = cv2.resize(image, TILE, interpolation=cv2.INTER_AREA)
            cv2.rectangle(tile, (0, 0), (TILE[0] - 1, 30), (0, 0, 0), -1)
            cv2.putText(
                tile, f"{scale}: {item.name}", (8, 21), cv2.FONT_HERSHEY_SIMPLEX, 0.6, (255, 255, 255), 1, cv2.LINE_AA
            )
            tiles.append(tile)
            print(f"{scale}: {item.name}, found after {tried} clip(s) tried")
            break
        else:
            print(f"{scale}: none of {tried} clips found")
            tiles.append(np.zeros((TILE[1], TILE[0], 3), np.uint8))
    grid = np.vstack([np.hstack(tiles[:2]), np.hstack(tiles[2:4])])
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(out), cv2.cvtColor(grid, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, 80])
    print(f"wrote {out} ({out.stat().st_size // 1024} KB)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
