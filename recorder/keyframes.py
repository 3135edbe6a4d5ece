"""The camera's real keyframe interval, measured on closed segments (or on packets read from the camera).

A stream copy can only cut on keyframes, so in copy mode a segment lasts at least one keyframe interval:
when that exceeds GN_SEG_TIME, clips are that much less precise. The recorder warns once and publishes
the interval in its health hash.

Some encoders send each IDR in several slices, and ffmpeg may then hand over one keyframe as several
key packets a hair apart (same frame; the segment muxer even cuts between them, leaving a one-frame
segment). Those count as one keyframe here, or the interval would come out halved.
"""

from __future__ import annotations

import itertools
import statistics
from pathlib import Path

from common.ffmpeg import FFmpegError, run
from recorder.presets import keyframe_probe_args

# Tolerance before a keyframe interval counts as longer than the segment time (timestamp jitter).
TOLERANCE = 0.15
# Key packets closer than this are one keyframe sent in slices (frames at 60 fps are 16.7 ms apart;
# the slices of one IDR differ by a tick of the 90 kHz RTP clock, 11 µs).
SAME_KEYFRAME = 0.01
# A segment this short is the front half of a keyframe sent in slices, not a GOP of its own.
SPLIT_SEGMENT = 0.15


def distinct(keyframe_times: list[float]) -> list[float]:
    """Sorted keyframe times with the slices of one keyframe (key packets < SAME_KEYFRAME apart) merged."""
    out: list[float] = []
    for t in sorted(keyframe_times):
        if not out or t - out[-1] >= SAME_KEYFRAME:
            out.append(t)
    return out


def whole_segments(segment_durations: list[float]) -> list[float]:
    """Segment durations with each split-keyframe sliver added to the segment that follows it."""
    out: list[float] = []
    carry = 0.0
    for d in segment_durations:
        if d < SPLIT_SEGMENT:
            carry += d
            continue
        out.append(d + carry)
        carry = 0.0
    return out


def interval_from(keyframe_times: list[float], segment_durations: list[float]) -> float | None:
    """Keyframe interval from keyframe times (continuous within a run), else from the segments' lengths.

    With several keyframes their spacing is the interval; with one per segment (a cut at every
    keyframe), the typical segment length is.
    """
    gaps = [b - a for a, b in itertools.pairwise(distinct(keyframe_times))]
    if gaps:
        return round(statistics.median(gaps), 3)
    whole = whole_segments(segment_durations)
    if whole:
        return round(statistics.median(whole), 3)
    return None


def keyframe_times(path: Path, timeout: float = 20) -> list[float]:
    """Times of the video key packets in one file (an IDR in slices may give several)."""
    out = run(keyframe_probe_args(path), timeout, what=f"ffprobe keyframes {path.name}").stdout
    return key_packet_times(out.decode(errors="replace").splitlines())


def key_packet_times(lines: list[str]) -> list[float]:
    """`pts_time,flags` lines → times of the packets flagged K (lines without a time are skipped)."""
    times = []
    for line in lines:
        pts, _, flags = line.strip().partition(",")
        if not flags.startswith("K"):
            continue
        try:
            times.append(float(pts))
        except ValueError:
            continue
    return times


def measure(paths: list[Path], durations: list[float]) -> float | None:
    """Keyframe interval of a camera from a few closed segments of one run (None when they cannot be read).

    The segments of one run share a timeline, so keyframes in consecutive files give the interval
    even when each file holds only one.
    """
    times: list[float] = []
    for path in paths:
        try:
            times += keyframe_times(path)
        except FFmpegError:
            continue
    return interval_from(times, durations)


def too_long(interval: float | None, seg_time: float) -> bool:
    """True when segments must be longer than GN_SEG_TIME because keyframes are further apart."""
    return interval is not None and interval > seg_time * (1 + TOLERANCE)
