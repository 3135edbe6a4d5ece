"""RQ job functions: build the clip, render it (watermark, thumbnail, sidecar), upload it."""
