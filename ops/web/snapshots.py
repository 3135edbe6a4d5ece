"""A camera's current picture for the dashboard: one frame of its newest closed segment, cached.

At most one decode per second per camera, whatever the number of dashboards open: a second request
within that second gets the cached JPEG. The segment is found through the segment index (its name) and
must lie in the camera's buffer dir; ffmpeg runs with the web process's low priority.
"""

from __future__ import annotations

import subprocess
import threading
import time
from pathlib import Path

import redis

from common.ffmpeg import base_args
from common.segments import SegmentIndex
from common.settings import Settings

MIN_INTERVAL = 1.0  # seconds between two decodes of one camera
DECODE_TIMEOUT = 5.0
WIDTH = 480


def frame_args(segment: Path, width: int = WIDTH) -> list[str]:
    """ffmpeg arguments: the first frame of `segment`, scaled, as one JPEG on stdout."""
    return [
        *base_args(),
        "-i",
        str(segment),
        "-frames:v",
        "1",
        "-vf",
        f"scale={width}:-2",
        "-q:v",
        "5",
        "-f",
        "image2pipe",
        "-c:v",
        "mjpeg",
        "pipe:1",
    ]


class Snapshots:
    """Per-camera cache of the newest frame."""

    def __init__(self, settings: Settings, conn: redis.Redis) -> None:
        self.settings, self.conn = settings, conn
        self._cache: dict[str, tuple[float, bytes | None]] = {}
        self._locks = {c.id: threading.Lock() for c in settings.cameras}

    def get(self, camera: str) -> bytes | None:
        """A JPEG of the camera's newest segment (None: no segment yet, or it cannot be decoded)."""
        lock = self._locks[camera]
        with lock:  # a second caller waits for the running decode and takes its result
            cached = self._cache.get(camera)
            if cached is not None and time.monotonic() - cached[0] < MIN_INTERVAL:
                return cached[1]
            jpeg = self._decode(camera)
            self._cache[camera] = (time.monotonic(), jpeg)
            return jpeg

    def _decode(self, camera: str) -> bytes | None:
        try:
            seg = SegmentIndex(self.conn, self.settings.device_id, camera).latest()
        except redis.RedisError:
            return None
        if seg is None:
            return None
        folder = self.settings.camera_buffer_dir(camera).resolve()
        path = (folder / seg.name).resolve()
        if path.parent != folder or not path.is_file():
            return None
        try:
            done = subprocess.run(frame_args(path), capture_output=True, timeout=DECODE_TIMEOUT, check=False)
        except (OSError, subprocess.TimeoutExpired):
            return None
        return done.stdout if done.returncode == 0 and done.stdout[:2] == b"\xff\xd8" else None
