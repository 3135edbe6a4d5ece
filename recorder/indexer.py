"""Segment indexing: ffmpeg's closed parts → segments with wall-clock times, named after them on disk.

The indexer keeps the list of closed segments on disk (the source of truth, with their sizes for
retention) and measures the camera's keyframe interval on each run's first segments. Each segment carries
its recording run (`run`): the ffmpeg run's id, and a new one should the camera's timestamps jump within
that run, so that a run is always one continuous stream, which the workers join byte for byte. It never
talks to Redis: the segments it returns are written to the index by the housekeeper's round trip. The
pure parts (list lines, `Anchor`, file names) are in `recorder.segmenter`, the keyframe measurement in
`recorder.keyframes`.
"""

from __future__ import annotations

import bisect
import contextlib
import logging
import os
import stat
from collections.abc import Callable, Iterable
from pathlib import Path

from common.log import event, get_logger
from common.segments import Segment
from recorder import keyframes
from recorder.segmenter import (
    Anchor,
    ListEntry,
    back_project,
    clean_leftovers,
    make_segment,
    millis,
    parse_list_line,
    scan,
)
from recorder.supervisor import Event

log = get_logger(__name__)

# A hole between two segments larger than this is logged (a frame at 15 fps is 0.067 s).
GAP_LOGGED = 0.1
# Which segment of a run is probed for keyframes: the first may start mid-GOP, the newest may still
# have bytes in ffmpeg's buffer.
PROBE_AFTER = 3
# Quiet time that ends a fresh run's initial burst of closed segments.
BURST_SETTLE = 0.3
# How long a part closed much later than its stream predicts waits for the end of ffmpeg's list: an ffmpeg
# whose input timed out closes its open part as it exits, and that part was not recorded until then.
EXIT_SETTLE = 0.5


class SegmentIndexer:
    """One camera's closed segments: on disk, in order, with their sizes and the keyframe interval."""

    def __init__(self, camera: str, mode: str, seg_time: float, directory: Path) -> None:
        self.camera = camera
        self.mode = mode
        self.seg_time = seg_time
        self.dir = directory
        self.path = os.fspath(directory)  # joined with a name each second: no pathlib on that path
        self.anchor = Anchor()
        # Oldest first, always (retention looks only at the head); with their sizes, and their durations
        # added up in milliseconds (exact: the times are whole milliseconds), kept as they come and go.
        self.segments: list[Segment] = []
        self.sizes: dict[str, int] = {}
        self.buffered_ms = 0
        self.run_id = ""
        # The recording run of the segments closing now: `run_id`, then `run_id-N` after the N-th jump of
        # the camera's timestamps within that ffmpeg run.
        self.run = ""
        self.jumps = 0
        self.run_closed: list[tuple[Segment, float]] = []
        self.keyframe_interval: float | None = None
        self.warned_keyframes = False

    def load(self) -> list[str]:
        """Clean what a crash left and take the closed segments on disk; returns the leftovers removed."""
        self.dir.mkdir(parents=True, exist_ok=True)
        removed = clean_leftovers(self.dir)
        self.segments = scan(self.dir)
        self.sizes = {s.name: self._size(s.name) for s in self.segments}
        self.buffered_ms = sum(map(millis, self.segments))
        if self.segments:
            self.anchor.floor = self.segments[-1].end
        return removed

    def new_run(self, run_id: str) -> None:
        """A new ffmpeg run: its first segment is re-anchored at its arrival, and starts a recording run."""
        self.run_id = self.run = run_id
        self.jumps = 0
        self.anchor.reset()
        self.run_closed = []

    def end_run(self) -> None:
        """The run is over: delete the parts it never closed."""
        clean_leftovers(self.dir, self.run_id)

    def pump(self, read: Callable[[float], list[Event]], timeout: float) -> list[Segment]:
        """Index the list lines `read` returns within `timeout` (ffmpeg's output); returns new segments."""
        batch = read(timeout)
        # A fresh run often delivers its first segments in a burst (ffmpeg buffered them while probing
        # the input): wait for the burst to end, so its last arrival anchors them all.
        if batch and self.anchor.prev_stream_end is None and timeout > 0:
            while more := read(BURST_SETTLE):
                batch += more
        if batch and self._late(batch[-1]):
            batch += read(EXIT_SETTLE)
        # The end of the list came with them: ffmpeg closed these parts as it exited (segmenter.Anchor).
        return self.index(batch, flushed=any(line is None for _, _, line in batch))

    def _late(self, last: Event) -> bool:
        """Did this list line of the current run come later than its stream predicts?"""
        run_id, arrival, line = last
        entry = parse_list_line(line) if run_id == self.run_id and line is not None else None
        return entry is not None and self.anchor.late(entry.stream_start, entry.stream_end, arrival)

    def index(self, batch: list[Event], flushed: bool = False) -> list[Segment]:
        """Index these list lines of ffmpeg's (those of an earlier run are ignored); returns new segments.

        `flushed`: the lines a stopped or ended ffmpeg wrote last (segmenter.Anchor.place says more).
        """
        entries = []
        for run_id, arrival, line in batch:
            entry = parse_list_line(line) if run_id == self.run_id and line is not None else None
            if entry is not None:
                entries.append((entry, arrival))
        arrivals = back_project([(e.stream_end, a) for e, a in entries])
        closed = []
        for (entry, _), arrival in zip(entries, arrivals, strict=True):
            seg = self._closed(entry, arrival, flushed)
            if seg is not None:
                closed.append(seg)
        return closed

    def _closed(self, entry: ListEntry, arrival: float, flushed: bool = False) -> Segment | None:
        """A part is closed: give it wall-clock times and rename it after them."""
        # This runs for every segment all day: one stat (which also gives the size, as ffmpeg closed the
        # part) and plain string paths, which cost less than pathlib's.
        part = os.path.join(self.path, entry.name)
        try:
            info = os.stat(part)
        except OSError:
            return None
        if not stat.S_ISREG(info.st_mode):
            return None
        if self.anchor.jumped(entry.stream_start):
            # Not one stream with what came before: a join of the two must rebuild the timestamps.
            self.jumps += 1
            self.run = f"{self.run_id}-{self.jumps}"
            event(log, "stream_jump", camera=self.camera, run=self.run)
        start, end = self.anchor.place(entry.stream_start, entry.stream_end, arrival, flushed)
        seg = make_segment(start, end, self.run)
        os.replace(part, os.path.join(self.path, seg.name))
        prev = self.segments[-1] if self.segments else None
        if prev is None or seg >= prev:
            self.segments.append(seg)
        else:  # the clock was set back more than Anchor.clock_jump: keep the list in order
            bisect.insort(self.segments, seg)
        self.sizes[seg.name] = info.st_size
        self.buffered_ms += millis(seg)
        self.run_closed.append((seg, entry.stream_end - entry.stream_start))
        if prev is not None and seg.start - prev.end > GAP_LOGGED:
            event(log, "segment_gap", camera=self.camera, gap=round(seg.start - prev.end, 3))
        if len(self.run_closed) == PROBE_AFTER:
            self.measure_keyframes()
        return seg

    def measure_keyframes(self) -> None:
        """Measure the keyframe interval on this run's closed segments; warn once if too long for copy."""
        probe = [self.dir / seg.name for seg, _ in self.run_closed[1:-1]]
        durations = [d for _, d in self.run_closed[1:]]
        interval = keyframes.measure(probe, durations)
        if interval is None:
            return
        self.keyframe_interval = interval
        seg_time = self.seg_time
        if self.mode == "copy" and keyframes.too_long(interval, seg_time) and not self.warned_keyframes:
            self.warned_keyframes = True
            event(
                log,
                "keyframe_interval_long",
                logging.WARNING,
                msg=(
                    f"camera {self.camera} sends a keyframe every {interval:g} s, longer than "
                    f"GN_SEG_TIME={seg_time:g} s: in copy mode segments cannot be shorter, so clips will be "
                    f"up to {interval - seg_time:.2g} s less precise; set the camera's GOP / I-frame "
                    f"interval to {seg_time:g} s (its frame rate × {seg_time:g}) or record with --mode encode"
                ),
                camera=self.camera,
                keyframe_interval=interval,
                seg_time=seg_time,
            )

    def forget(self, gone: Iterable[Segment]) -> None:
        """Retention deleted these segments."""
        # By name (a segment's name holds its times): a string's hash is cached, a Segment's is not.
        by_name = {seg.name: seg for seg in gone if seg.name in self.sizes}
        if not by_name:
            return
        segments = self.segments
        head = len(by_name)
        if all(s.name in by_name for s in segments[:head]):
            del segments[:head]  # the usual case: the oldest went
        else:
            self.segments = [s for s in segments if s.name not in by_name]
        for name in by_name:
            del self.sizes[name]
        self.buffered_ms -= sum(map(millis, by_name.values()))

    def buffered(self) -> float:
        """Seconds of video on disk: the segments' durations added up."""
        return self.buffered_ms / 1000

    def _size(self, name: str) -> int:
        with contextlib.suppress(OSError):
            return (self.dir / name).stat().st_size
        return 0
