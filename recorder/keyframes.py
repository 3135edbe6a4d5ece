"""The camera's real keyframe interval, measured on closed segments.

A stream copy can only cut on keyframes, so in copy mode a segment lasts at least one keyframe interval:
when that exceeds GN_SEG_TIME, clips are that much less precise. The recorder warns once and publishes
the interval in its health hash.
"""

from __future__ import annotations

import itertools
import statistics
from pathlib import Path

from common.ffmpeg import FFmpegError, run
from recorder.presets import keyframe_probe_args

# Tolerance before a keyframe interval counts as longer than the segment time (timestamp jitter).
TOLERANCE = 0.15


def interval_from(keyframe_times: list[float], segment_durations: list[float]) -> float | None:
    """Keyframe interval from keyframe times inside segments, else from the segments' own lengths.

    With several keyframes in a segment their spacing is the interval; with one per segment (a cut at
    every keyframe), the typical segment length is.
    """
    times = sorted(keyframe_times)
    gaps = [b - a for a, b in itertools.pairwise(times) if b - a > 0]
    if gaps:
        return round(statistics.median(gaps), 3)
    if segment_durations:
        return round(statistics.median(segment_durations), 3)
    return None


def keyframe_times(path: Path, timeout: float = 20) -> list[float]:
    """Times of the video keyframes in one file."""
    out = run(keyframe_probe_args(path), timeout, what=f"ffprobe keyframes {path.name}").stdout
    times = []
    for line in out.decode(errors="replace").splitlines():
        try:
            times.append(float(line.strip().strip(",")))
        except ValueError:
            continue
    return times


def measure(paths: list[Path], durations: list[float]) -> float | None:
    """Keyframe interval of a camera from a few closed segments (None when they cannot be read)."""
    times: list[float] = []
    for path in paths:
        try:
            found = keyframe_times(path)
        except FFmpegError:
            continue
        # Only spacings inside one file are meaningful; a file with one keyframe contributes none.
        if len(found) >= 2:
            times = found
            break
    return interval_from(times, durations)


def too_long(interval: float | None, seg_time: float) -> bool:
    """True when segments must be longer than GN_SEG_TIME because keyframes are further apart."""
    return interval is not None and interval > seg_time * (1 + TOLERANCE)
