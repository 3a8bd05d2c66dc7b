"""Where a clock's crop becomes the time its dial shows, and readings are fused per segment."""
