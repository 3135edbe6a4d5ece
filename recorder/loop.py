"""The recorder's loop: wires ffmpeg supervision, segment indexing and housekeeping for one camera.

Where each concern lives:
- `recorder/supervisor.py`: the ffmpeg child (start, readers of its output, exit and stall, restarts);
- `recorder/indexer.py`: closed parts → wall-clock segments on disk, keyframe interval;
- `recorder/housekeeping.py`: retention, disk alarm, health, in one Redis round trip a pass;
- `recorder/redislink.py`: Redis down never stops the recording;
- the pure decisions: `watchdog.py`, `segmenter.py`, `retention.py`, `keyframes.py`, `presets.py`.
This module owns only the camera's state (recording, backoff …) and the order in which things happen.
"""

from __future__ import annotations

import logging
import os
import signal
import time
from pathlib import Path
from typing import Any

import redis

from common.events import EventType
from common.log import event, get_logger, redact
from common.segments import Segment
from common.settings import Camera, Settings, camera_mode
from common.verdict import State
from common.watermark import Watermark
from recorder import housekeeping, presets
from recorder.health import Health
from recorder.housekeeping import Housekeeper
from recorder.indexer import SegmentIndexer
from recorder.redislink import RedisLink
from recorder.supervisor import Failure, Supervisor

log = get_logger(__name__)

# Longest wait for ffmpeg's output in one turn: bounds how late a stall, an exit or SIGTERM is seen (an
# exit usually wakes the loop at once: ffmpeg's stdout closes). Each wake-up costs CPU even when idle.
TURN = 1.0


class Recorder:
    """Records one camera until SIGTERM/SIGINT."""

    def __init__(
        self, settings: Settings, camera: Camera, conn: redis.Redis, wm: Watermark | None = None
    ) -> None:
        self.camera = camera
        self.kind = presets.source_kind(camera.source)
        self.mode = presets.effective_mode(self.kind, camera_mode(settings, camera))
        self.wm = wm if self.mode == "encode" else None
        directory = settings.camera_buffer_dir(camera.id)
        self.link = RedisLink(conn, camera.id)
        self.ffmpeg = Supervisor(settings, camera, self.mode, self.wm, directory)
        self.indexer = SegmentIndexer(camera.id, self.mode, settings.seg_time, directory)
        health = Health(conn, settings, camera.id, camera.source, self.mode)
        self.house = Housekeeper(settings, camera.id, self.link, self.indexer, health)
        self.state = State.STARTING
        self.last_error = ""
        # Closed segments the index has not had yet: they ride on the next housekeeping round trip.
        self.unindexed: list[Segment] = []
        self.next_housekeeping = 0.0
        self.stopping = False

    def run(self) -> int:
        """Record until asked to stop; returns the exit code."""
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, self._on_signal)
        self.prepare()
        try:
            while not self.stopping:
                self.tick()
        finally:
            self.shutdown()
        return 0

    def _on_signal(self, signum: int, _frame: Any) -> None:
        self.stopping = True

    def prepare(self) -> None:
        """Clean what a crash left, rebuild the index from the disk, register the camera."""
        removed = self.indexer.load()
        event(
            log,
            "recorder_start",
            camera=self.camera.id,
            source=redact(self.camera.source),
            mode=self.mode,
            watermark=self.wm is not None,
            segments_on_disk=len(self.indexer.segments),
            leftovers_removed=len(removed),
        )
        self.house.sync()
        self.keep_house()

    def tick(self) -> None:
        """One turn: (re)start ffmpeg when due, index what closed, watch ffmpeg, keep house."""
        if self.ffmpeg.due(time.monotonic()):
            self.start()
        now = time.monotonic()
        wait = min(TURN, self.next_housekeeping - now)
        if self.ffmpeg.proc is None:
            wait = min(wait, self.ffmpeg.next_start - now)
        closed = self.indexer.pump(self.ffmpeg.read, max(wait, 0.01))
        if closed:
            self.on_closed(closed)
        if self.stopping:
            return
        failure = self.ffmpeg.check(time.monotonic())
        if failure is not None:
            self.on_failure(failure)
        elif closed or time.monotonic() >= self.next_housekeeping:
            self.keep_house()

    def shutdown(self) -> None:
        """Stop ffmpeg gracefully so the last segment closes and is indexed; publish `stopped`."""
        self.stopping = True
        if self.ffmpeg.proc is not None:
            self.end_run()
        self.state = State.STOPPED
        self.keep_house(retain=False)
        event(log, "recorder_stopped", camera=self.camera.id, segments=len(self.indexer.segments))

    def start(self) -> None:
        """Start ffmpeg, unless the camera is known not to answer yet."""
        why = self.ffmpeg.unreachable()
        if why is not None:
            if why != self.last_error:
                event(log, "camera_unreachable", logging.DEBUG, msg=why, camera=self.camera.id)
                self.last_error = why
            return
        try:
            run_id = self.ffmpeg.start()
        except OSError as exc:
            self.on_failure(Failure(f"cannot start ffmpeg: {exc}"))
            return
        self.indexer.new_run(run_id)
        quiet = self.ffmpeg.backoff.failures > 1
        level = logging.DEBUG if quiet else logging.INFO
        event(log, "ffmpeg_started", level, camera=self.camera.id, pid=self.ffmpeg.pid, run=run_id)
        self.keep_house()

    def end_run(self) -> None:
        """Stop this run's ffmpeg; what it closed last is indexed with the next round trip."""
        # Its last part closed because it stopped (after a stall, maybe long after its frames came): it is
        # dated by its stream, or the index and the health would say the camera recorded until now.
        self.unindexed += self.indexer.index(self.ffmpeg.stop(), flushed=True)
        self.indexer.end_run()

    def on_closed(self, closed: list[Segment]) -> None:
        """Segments closed: the camera works (again)."""
        self.unindexed += closed
        failures = self.ffmpeg.backoff.failures
        self.ffmpeg.progress(time.monotonic())
        if self.indexer.keyframe_interval is not None:
            self.ffmpeg.keyframes_measured(self.indexer.keyframe_interval)
        if self.state is not State.RECORDING and not self.stopping:
            if failures:
                event(log, "recording_resumed", camera=self.camera.id, after_failures=failures)
                self.link.call(lambda: self.house.health.tell_fleet(EventType.CAMERA_RECONNECTED))
            self.state = State.RECORDING
            self.last_error = ""

    def on_failure(self, failure: Failure) -> None:
        """ffmpeg ended or stalled: stop it, schedule a restart; the first failure is logged clearly."""
        if failure.stalled:
            self.state = State.STALLED
            self.link.call(self.house.health.stalled)
        self.end_run()
        self.last_error = redact(failure.reason)
        delay = self.ffmpeg.schedule_restart()
        self.state = State.BACKOFF
        first = self.ffmpeg.backoff.failures == 1
        event(
            log,
            "ffmpeg_restart",
            logging.WARNING if first else logging.DEBUG,
            msg=f"camera {self.camera.id} is not recording: {self.last_error}; retrying in {delay:g} s"
            + (" (further failures are logged at debug level until it records again)" if first else ""),
            camera=self.camera.id,
            backoff=delay,
            failures=self.ffmpeg.backoff.failures,
        )
        self.link.call(lambda: self.house.health.restarted(time.time()))
        # The fleet hears of the camera lost, and of the first restart that did not bring it back.
        lost = {1: EventType.CAMERA_RECONNECTING, 2: EventType.CAMERA_RESTART_FAILED}.get(
            self.ffmpeg.backoff.failures
        )
        if lost is not None:
            self.link.call(lambda: self.house.health.tell_fleet(lost, self.last_error))
        self.keep_house()

    def keep_house(self, retain: bool = True) -> None:
        """Index what closed, publish health, apply retention (unless told not to): one Redis round trip."""
        segments = self.indexer.segments
        fields = {
            "state": self.state.value,
            "last_segment_end": segments[-1].end if segments else None,
            "buffered_seconds": round(self.indexer.buffered(), 3),
            "keyframe_interval": self.indexer.keyframe_interval,
            # The watchdog's own limit: what status, the press and the build judge this camera by.
            "stall_limit": self.ffmpeg.watchdog.limit,
            "run": self.indexer.run,
            "pid": self.ffmpeg.pid,
            "last_error": self.last_error,
        }
        added, self.unindexed = self.unindexed, []
        self.house.run(added, fields, retain)
        self.next_housekeeping = time.monotonic() + housekeeping.EVERY


def check_writable(directory: Path) -> str | None:
    """None if the recorder can write segments into `directory`, else why not."""
    try:
        directory.mkdir(parents=True, exist_ok=True)
        probe = directory / f".tmp-probe-{os.getpid()}"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as exc:
        return exc.strerror or str(exc)
    return None
