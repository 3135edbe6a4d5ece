"""Closed segments: ffmpeg's list lines → wall-clock times → files named by their times.

The file name of a closed segment holds its wall-clock start and end in milliseconds and its recording
run (`seg_<start_ms>_<end_ms>_<run>.ts`; older recorders wrote no run), so the disk is the source of
truth and the Redis index, run ids included, can be rebuilt from it at any time. Wall-clock times come
from `Anchor`, which keeps segments tiling (start of one = end of the previous) while slewing toward
their arrival time, so a camera clock that runs fast or slow cannot make the index drift.
"""

from __future__ import annotations

import contextlib
import os
import re
from dataclasses import dataclass
from pathlib import Path

from common.fsutil import is_tmp
from common.segments import Segment
from recorder.presets import PART_PREFIX

SEG_RE = re.compile(r"^seg_(\d+)_(\d+)(?:_([0-9A-Za-z-]+))?\.ts$")


def seg_name(start: float, end: float, run: str = "") -> str:
    """File name of a closed segment with these wall-clock times, cut in this run (letters, digits, `-`)."""
    return f"seg_{round(start * 1000)}_{round(end * 1000)}" + (f"_{run}" if run else "") + ".ts"


def segment_from_name(name: str) -> Segment | None:
    """The Segment a closed file's name describes (None for other files)."""
    m = SEG_RE.match(name)
    if not m:
        return None
    start, end = int(m[1]) / 1000, int(m[2]) / 1000
    return Segment(start=start, end=end, name=name, run=m[3] or "") if end > start else None


def millis(seg: Segment) -> int:
    """A segment's duration in whole milliseconds, as its file name says."""
    return round(seg.end * 1000) - round(seg.start * 1000)


def make_segment(start: float, end: float, run: str = "") -> Segment:
    """A Segment whose times and run are exactly what its file name says (so index members always match)."""
    seg = segment_from_name(seg_name(start, end, run))
    assert seg is not None
    return seg


@dataclass(frozen=True)
class ListEntry:
    """One line of ffmpeg's CSV segment list: a part that is closed, with its stream times."""

    name: str
    stream_start: float
    stream_end: float


def parse_list_line(line: str) -> ListEntry | None:
    """`part_x_000001.ts,1.000000,2.000000` → ListEntry (None for anything else)."""
    parts = line.strip().rsplit(",", 2)
    if len(parts) != 3:
        return None
    try:
        return ListEntry(os.path.basename(parts[0].strip('"')), float(parts[1]), float(parts[2]))
    except ValueError:
        return None


def scan(directory: Path) -> list[Segment]:
    """Closed segments on disk, oldest first."""
    if not directory.is_dir():
        return []
    found = (segment_from_name(p.name) for p in directory.iterdir())
    return sorted(s for s in found if s is not None)


def clean_leftovers(directory: Path, run_id: str | None = None) -> list[str]:
    """Delete parts ffmpeg never closed (of one run, or all) and temp files; returns their names."""
    removed: list[str] = []
    prefix = f"{PART_PREFIX}{run_id}_" if run_id else PART_PREFIX
    if not directory.is_dir():
        return removed
    for path in directory.iterdir():
        if path.name.startswith(prefix) or (run_id is None and is_tmp(path)):
            with contextlib.suppress(FileNotFoundError):
                path.unlink()
                removed.append(path.name)
    return removed


def back_project(closes: list[tuple[float, float]]) -> list[float]:
    """Best arrival time of each of a batch of closes (stream_end, arrival) seen together.

    A segment closed no later than its own arrival, nor than a later segment's arrival minus the stream
    time between them: when ffmpeg delivers a burst (after probing the input, or after a network hiccup),
    the last arrival dates them all.
    """
    out = [0.0] * len(closes)
    bound = float("inf")
    next_end: float | None = None
    for i in range(len(closes) - 1, -1, -1):
        stream_end, arrival = closes[i]
        if next_end is not None:
            bound -= next_end - stream_end
        bound = min(bound, arrival)
        out[i] = bound
        next_end = stream_end
    return out


@dataclass
class Anchor:
    """Places closed segments on the wall clock.

    Within one continuous stream each segment starts where the previous one ended (no gaps, no overlaps)
    and lasts its stream duration plus a correction of `gain` × (arrival − predicted end), limited to
    `max_slew` of its duration: a camera clock 1 % slow or fast is tracked with a steady error of a few
    hundredths of a second. A stream discontinuity, a new ffmpeg run, or an arrival more than `resync`
    seconds later than predicted re-anchors at arrival time, which leaves an honest gap in the index.
    """

    gain: float = 0.5
    max_slew: float = 0.25
    resync: float = 2.0
    # The system clock stepped back this far (NTP fixing a Pi without RTC): start again from arrival.
    clock_jump: float = 60.0
    # Stream-time jump (s) still treated as continuous; ffmpeg's list tiles exactly.
    continuity: float = 0.25
    prev_end: float | None = None
    prev_stream_end: float | None = None
    # No segment may start before this (the last one already on disk): the index never overlaps.
    floor: float = 0.0

    def reset(self) -> None:
        """A new ffmpeg run: the next segment is re-anchored at its arrival."""
        self.prev_stream_end = None

    def carries_on(self, stream_start: float) -> bool:
        """True when a segment starting at `stream_start` (stream time) carries on the previous stream."""
        return (
            self.prev_stream_end is not None and abs(stream_start - self.prev_stream_end) <= self.continuity
        )

    def jumped(self, stream_start: float) -> bool:
        """True when this run's stream has had a segment and one starting at `stream_start` does not carry
        it on: the camera's timestamps jumped within one ffmpeg run."""
        return self.prev_stream_end is not None and not self.carries_on(stream_start)

    def late(self, stream_start: float, stream_end: float, arrival: float) -> bool:
        """Would a segment that carries the stream on and was seen at `arrival` be re-anchored there?"""
        if self.prev_end is None or not self.carries_on(stream_start):
            return False
        return arrival - (self.prev_end + max(stream_end - stream_start, 0.001)) > self.resync

    def place(
        self, stream_start: float, stream_end: float, arrival: float, flushed: bool = False
    ) -> tuple[float, float]:
        """Wall-clock (start, end) of a segment whose close was seen at `arrival`, rounded to ms.

        `flushed`: ffmpeg closed it because it was stopped or ended (a stall, an exit, the recorder's
        stop), so its arrival says nothing of when it was recorded: it carries its stream on, unslewed.
        """
        d = max(stream_end - stream_start, 0.001)
        continuous = self.prev_end is not None and self.carries_on(stream_start)
        start = end = 0.0
        if continuous:
            assert self.prev_end is not None
            start = self.prev_end
            error = arrival - (start + d)
            if flushed:
                end = start + d
            elif error > self.resync or error < -self.clock_jump:
                continuous = False
            else:
                limit = self.max_slew * d
                end = start + d + min(max(self.gain * error, -limit), limit)
        if not continuous:
            start = arrival - d
            if start > self.floor - self.clock_jump:
                start = max(start, self.floor)
            end = start + d
        start, end = round(start, 3), round(end, 3)
        if end <= start:
            end = start + 0.001
        self.prev_end = end
        self.prev_stream_end = stream_end
        self.floor = end
        return start, end
