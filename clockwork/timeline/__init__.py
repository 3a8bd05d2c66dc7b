"""Where detections become a result: options, the scan's passes, the one decode-detect-read loop, segments."""
