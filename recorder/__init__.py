"""The recorder: one process per camera, owning its ffmpeg child, the segment index and retention."""
