"""Where frames become detections: the darknet model in PyTorch, the clock head, box merging, the model store."""
