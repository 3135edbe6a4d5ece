"""What the recorder, trigger and worker share: settings, Redis, FFmpeg helpers, files, logs.

`common` sits at the bottom: it imports none of `recorder`, `trigger` or `worker`.
"""
