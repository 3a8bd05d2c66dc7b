"""Where a video becomes frames: containers probed and checked, CPU (PyAV) and NVDEC decoders, the views of a frame."""
