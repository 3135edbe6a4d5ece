"""Facts about the recorder's MPEG-TS segment files, read from their first bytes (no ffprobe).

Which segments are one stream is not read here: the recorder says it, with the run id each segment
carries in the index (common.segments.runs). Files are read only for what the index cannot know:

- `ts_problem`: whether a file can be joined at all. The index lists a segment the recorder closed,
  but its file may since have been cut short by a power cut or a full disk, or replaced by something
  that is not MPEG-TS; such a file is left out (a gap) rather than break the join;
- `first_video_pts` / `first_audio_pts`: a file's first timestamps, for where a join of files starting
  with it must end (`clip_end`: the audio may start before the video).
"""

from __future__ import annotations

import math
from pathlib import Path

# MPEG-TS: 188-byte packets, each starting with the sync byte; how much of a segment to read for its
# first timestamp; the 33-bit PTS wrap.
TS_PACKET, TS_SYNC = 188, 0x47
TS_HEAD_BYTES = 64 * 1024
PTS_WRAP = 2**33 / 90000
# A clip's end sits this far before the next video frame, so that frame is surely left out.
FRAME_EPSILON = 0.001


def ts_problem(path: Path) -> str:
    """Why a segment file cannot be joined ('' when it looks fine): missing, empty, or not MPEG-TS.

    Reads two packet headers, not the file: the recorder's own closing record says the rest.
    """
    try:
        size = path.stat().st_size
        with open(path, "rb") as fh:
            head = fh.read(TS_PACKET + 1)
    except FileNotFoundError:
        return "missing"
    except OSError as exc:
        return f"unreadable ({exc.strerror})"
    if size < TS_PACKET:
        return f"{size} bytes"
    if head[0] != TS_SYNC or (len(head) > TS_PACKET and head[TS_PACKET] != TS_SYNC):
        return "not MPEG-TS"
    return ""


def clip_end(first: Path, window: float, fps: float) -> float:
    """The output duration (`-t`) that ends a join of MPEG-TS files, the first being `first`, `window`
    seconds after its first video frame, on a frame boundary (`fps`: the video's frame rate).

    Where the audio starts before the video, the output's time 0 is the audio's start: the end moves by
    that lead. Measured on the join's own first file: its video may sit a hair off the camera's.
    """
    video, audio = first_video_pts(first), first_audio_pts(first)
    lead = video - audio if video is not None and audio is not None and audio < video else 0.0
    return end_on_frame(window, fps, lead)


def end_on_frame(window: float, fps: float, lead: float = 0.0) -> float:
    """The clip's output duration (`-t`) for a window of `window` s from the first video frame.

    The clip ends right after the video frame that holds the window's end, so the audio, which a copy
    cuts at the same instant, ends with the video instead of a frame earlier. `lead`: how much earlier
    than the first video frame the audio starts (the output's time 0 is the earliest stream).
    """
    if fps <= 0:
        return window + lead
    frame = 1 / fps
    frames = math.ceil(window / frame - 1e-6)
    return frames * frame - FRAME_EPSILON + lead


def first_video_pts(path: Path) -> float | None:
    """PTS in seconds of the first video PES packet of an MPEG-TS file, read from its first bytes.

    Cheaper than an ffprobe per segment (which opens and probes the whole stream).
    """
    return _first_pts(path, 0xE0, 0xEF)


def first_audio_pts(path: Path) -> float | None:
    """PTS in seconds of the first audio PES packet of an MPEG-TS file (None without audio)."""
    return _first_pts(path, 0xC0, 0xDF)


def _first_pts(path: Path, lo: int, hi: int) -> float | None:
    try:
        with open(path, "rb") as fh:
            data = fh.read(TS_HEAD_BYTES)
    except OSError:
        return None
    for off in range(0, len(data) - TS_PACKET + 1, TS_PACKET):
        pkt = data[off : off + TS_PACKET]
        # Sync byte, then only packets that start a PES and carry a payload.
        if pkt[0] != TS_SYNC or not pkt[1] & 0x40 or not pkt[3] & 0x10:
            continue
        pes = pkt[5 + pkt[4] :] if pkt[3] & 0x20 else pkt[4:]
        if len(pes) < 14 or pes[:3] != b"\0\0\1" or not lo <= pes[3] <= hi or not pes[7] & 0x80:
            continue
        p = pes[9:14]
        ticks = ((p[0] >> 1) & 7) << 30 | p[1] << 22 | (p[2] >> 1) << 15 | p[3] << 7 | p[4] >> 1
        return ticks / 90000
    return None
