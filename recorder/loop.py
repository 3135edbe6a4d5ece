"""The recorder's loop: one ffmpeg child, its closed segments indexed, retention, the watchdog.

Everything runs on the main thread except two small readers of ffmpeg's stdout (the CSV list of closed
parts, time-stamped on arrival) and stderr (kept for error messages). ffmpeg is spawned from the main
thread, so PR_SET_PDEATHSIG takes it down if the recorder is SIGKILLed.
"""

from __future__ import annotations

import contextlib
import logging
import os
import queue
import signal
import subprocess
import threading
import time
from collections import deque
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any, TypeVar

import redis

from common import journal
from common.fsutil import free_mb
from common.log import event, get_logger, redact
from common.proc import spawn, stop
from common.redisconn import clear_alarm, raise_alarm
from common.segments import Pin, Segment, SegmentIndex
from common.settings import Camera, Settings, camera_mode
from common.watermark import Watermark
from recorder import keyframes, presets, retention
from recorder.health import Health, State
from recorder.probe import camera_audio
from recorder.segmenter import (
    Anchor,
    ListEntry,
    back_project,
    clean_leftovers,
    make_segment,
    parse_list_line,
    scan,
)
from recorder.watchdog import Backoff, Watchdog, stall_limit

log = get_logger(__name__)
T = TypeVar("T")

HOUSEKEEPING_EVERY = 1.0
REDIS_RETRY_EVERY = 2.0
# A hole between two segments larger than this is logged (a frame at 15 fps is 0.067 s).
GAP_LOGGED = 0.1
# Which segment of a run is probed for keyframes: the first may start mid-GOP, the newest may still
# have bytes in ffmpeg's buffer.
PROBE_AFTER = 3
STOP_GRACE = 5.0
# Extra time for a new ffmpeg's first segment: connecting and probing the input (up to 5 s).
STARTUP_GRACE = 6.0
# Quiet time that ends a fresh run's initial burst of closed segments.
BURST_SETTLE = 0.3
READER_JOIN = 3.0


class Recorder:
    """Records one camera until SIGTERM/SIGINT."""

    def __init__(
        self, settings: Settings, camera: Camera, conn: redis.Redis, wm: Watermark | None = None
    ) -> None:
        self.settings = settings
        self.camera = camera
        self.kind = presets.source_kind(camera.source)
        self.mode = presets.effective_mode(self.kind, camera_mode(settings, camera))
        self.wm = wm if self.mode == "encode" else None
        self.dir = settings.camera_buffer_dir(camera.id)
        self.index = SegmentIndex(conn, settings.device_id, camera.id)
        self.health = Health(conn, settings, camera.id, camera.source, self.mode)
        self.conn = conn
        self.anchor = Anchor()
        self.backoff = Backoff(cap=settings.restart_backoff_max)
        self.watchdog = Watchdog(limit=settings.effective_stall_seconds, startup=STARTUP_GRACE)
        self.events: queue.Queue[tuple[str, float, str | None]] = queue.Queue()
        self.proc: subprocess.Popen[bytes] | None = None
        self.readers: list[threading.Thread] = []
        self.stderr_tail: deque[str] = deque(maxlen=8)
        self.run_id = ""
        self.runs = 0
        self.run_closed: list[tuple[Segment, float]] = []
        self.segments: list[Segment] = []
        self.sizes: dict[str, int] = {}
        self.state = State.STARTING
        self.last_error = ""
        self.keyframe_interval: float | None = None
        self.warned_keyframes = False
        self.redis_ok = True
        self.next_redis_try = 0.0
        self.pins: list[Pin] = []
        # None at start: unknown, so an alarm left by an earlier run is cleared once the disk is seen OK.
        self.alarm_up: bool | None = None
        self.next_start = 0.0
        self.last_housekeeping = 0.0
        self.stopping = False

    # ------------------------------------------------------------------ top level
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
        self.dir.mkdir(parents=True, exist_ok=True)
        removed = clean_leftovers(self.dir)
        self.segments = scan(self.dir)
        self.sizes = {s.name: self._size(s.name) for s in self.segments}
        if self.segments:
            self.anchor.floor = self.segments[-1].end
        event(
            log,
            "recorder_start",
            camera=self.camera.id,
            source=redact(self.camera.source),
            mode=self.mode,
            watermark=self.wm is not None,
            segments_on_disk=len(self.segments),
            leftovers_removed=len(removed),
        )
        self._sync_index()
        self.publish()

    def tick(self) -> None:
        """One turn of the loop: (re)start ffmpeg when due, index closed parts, watch, keep house."""
        if self.proc is None and time.monotonic() >= self.next_start:
            self.start_ffmpeg()
        self.pump(0.25)
        if self.stopping:
            return
        t = time.monotonic()
        if self.proc is not None:
            if self.proc.poll() is not None:
                self.on_exit()
            elif self.watchdog.stalled(t):
                self.on_stall()
        if t - self.last_housekeeping >= HOUSEKEEPING_EVERY:
            self.last_housekeeping = t
            self.housekeeping()

    def shutdown(self) -> None:
        """Stop ffmpeg gracefully so the last segment closes and is indexed; publish `stopped`."""
        self.stopping = True
        if self.proc is not None:
            self.finish_run()
        self.state = State.STOPPED
        self.publish()
        event(log, "recorder_stopped", camera=self.camera.id, segments=len(self.segments))

    # ------------------------------------------------------------------ ffmpeg
    def start_ffmpeg(self) -> None:
        """Spawn ffmpeg (main thread: PDEATHSIG) and the readers of its output."""
        self.runs += 1
        self.run_id = f"{os.getpid()}-{self.runs}"
        args = presets.record_args(
            self.camera.source,
            self.mode,
            self.settings.encoder,
            self.settings.seg_time,
            presets.part_pattern(self.dir, self.run_id),
            rtsp_transport=self.settings.rtsp_transport,
            timeout_seconds=self.settings.rtsp_timeout_seconds,
            wm=self.wm,
            audio=camera_audio(
                self.camera.id,
                self.camera.source,
                self.settings.rtsp_transport,
                self.settings.rtsp_timeout_seconds,
            ),
        )
        self.stderr_tail.clear()
        self.dir.mkdir(parents=True, exist_ok=True)
        try:
            self.proc = spawn(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL)
        except OSError as exc:
            self.proc = None
            self.failed(f"cannot start ffmpeg: {exc}")
            return
        assert self.proc.stdout is not None and self.proc.stderr is not None
        self.readers = [
            threading.Thread(target=self._read_list, args=(self.run_id, self.proc.stdout), daemon=True),
            threading.Thread(target=self._read_errors, args=(self.proc.stderr,), daemon=True),
        ]
        for reader in self.readers:
            reader.start()
        self.anchor.reset()
        self.run_closed = []
        self.watchdog.started(time.monotonic())
        quiet = self.backoff.failures > 1
        event(
            log,
            "ffmpeg_started",
            logging.DEBUG if quiet else logging.INFO,
            camera=self.camera.id,
            pid=self.proc.pid,
            run=self.run_id,
        )
        self.publish()

    def _read_list(self, run_id: str, stream: IO[bytes]) -> None:
        # The arrival time is taken here, not in the (possibly busy) main loop.
        for raw in iter(stream.readline, b""):
            self.events.put((run_id, time.time(), raw.decode(errors="replace")))
        self.events.put((run_id, time.time(), None))

    def _read_errors(self, stream: IO[bytes]) -> None:
        for raw in iter(stream.readline, b""):
            line = redact(raw.decode(errors="replace").strip())
            if line:
                self.stderr_tail.append(line)
                log.debug("ffmpeg: %s", line, extra={"gn": {"camera": self.camera.id}})

    def finish_run(self) -> None:
        """Stop this run's ffmpeg (SIGINT closes the open part), index what it closed, drop the rest."""
        if self.proc is not None:
            stop(self.proc, grace=STOP_GRACE)
        for reader in self.readers:
            reader.join(READER_JOIN)
        self.pump(0)
        clean_leftovers(self.dir, self.run_id)
        self.proc = None
        self.readers = []

    def on_exit(self) -> None:
        """ffmpeg ended by itself (camera gone, stream ended, error)."""
        assert self.proc is not None
        code = self.proc.returncode
        self.finish_run()
        why = " | ".join(list(self.stderr_tail)[-2:]) or "no error output"
        self.failed(f"ffmpeg exited with code {code}: {why}")

    def on_stall(self) -> None:
        """ffmpeg is alive but no segment closed in time: kill it and start again."""
        self.state = State.STALLED
        self._redis(self.health.stalled)
        limit = self.watchdog.limit
        self.finish_run()
        self.failed(f"no new segment for {limit:g} s (stalled)")

    def failed(self, reason: str) -> None:
        """Schedule a restart with backoff; the first failure is logged clearly, repeats quietly."""
        self.last_error = redact(reason)
        delay = self.backoff.next_delay()
        self.next_start = time.monotonic() + delay
        self.state = State.BACKOFF
        first = self.backoff.failures == 1
        event(
            log,
            "ffmpeg_restart",
            logging.WARNING if first else logging.DEBUG,
            msg=f"camera {self.camera.id} is not recording: {self.last_error}; retrying in {delay:g} s"
            + (" (further failures are logged at debug level until it records again)" if first else ""),
            camera=self.camera.id,
            backoff=delay,
            failures=self.backoff.failures,
        )
        self._redis(lambda: self.health.restarted(time.time()))
        self.publish()

    # ------------------------------------------------------------------ closed segments
    def pump(self, timeout: float) -> None:
        """Handle every list line waiting (waiting up to `timeout` for the first), as one batch."""
        try:
            first = self.events.get(timeout=timeout) if timeout > 0 else self.events.get_nowait()
        except queue.Empty:
            return
        batch = [first]
        # A fresh run often delivers its first segments in a burst (ffmpeg buffered them while probing
        # the input): wait for the burst to end, so its last arrival anchors them all.
        settle = BURST_SETTLE if self.anchor.prev_stream_end is None and timeout > 0 else 0.0
        while True:
            try:
                batch.append(self.events.get(timeout=settle) if settle else self.events.get_nowait())
            except queue.Empty:
                break
        entries = []
        for run_id, arrival, line in batch:
            entry = parse_list_line(line) if run_id == self.run_id and line is not None else None
            if entry is not None:
                entries.append((entry, arrival))
        arrivals = back_project([(e.stream_end, a) for e, a in entries])
        for (entry, _), arrival in zip(entries, arrivals, strict=True):
            self.on_closed(entry, arrival)

    def on_closed(self, entry: ListEntry, arrival: float) -> None:
        """A part is closed: give it wall-clock times, rename it after them, index it."""
        part = self.dir / entry.name
        if not part.is_file():
            return
        start, end = self.anchor.place(entry.stream_start, entry.stream_end, arrival)
        seg = make_segment(start, end)
        os.replace(part, self.dir / seg.name)
        prev = self.segments[-1] if self.segments else None
        self.segments.append(seg)
        self.sizes[seg.name] = self._size(seg.name)
        self.run_closed.append((seg, entry.stream_end - entry.stream_start))
        self._redis(lambda: self.index.add(seg))
        self.watchdog.progress(time.monotonic())
        if prev is not None and seg.start - prev.end > GAP_LOGGED:
            event(log, "segment_gap", camera=self.camera.id, gap=round(seg.start - prev.end, 3))
        if self.state is not State.RECORDING:
            if self.backoff.failures:
                event(log, "recording_resumed", camera=self.camera.id, after_failures=self.backoff.failures)
            self.state = State.RECORDING
            self.last_error = ""
            self.backoff.reset()
            self.publish()
        if len(self.run_closed) == PROBE_AFTER:
            self.measure_keyframes()

    def measure_keyframes(self) -> None:
        """Measure the keyframe interval on this run's closed segments; warn once if too long for copy."""
        probe = [self.dir / seg.name for seg, _ in self.run_closed[1:-1]]
        durations = [d for _, d in self.run_closed[1:]]
        interval = keyframes.measure(probe, durations)
        if interval is None:
            return
        self.keyframe_interval = interval
        self.watchdog.limit = stall_limit(
            self.settings.effective_stall_seconds, self.settings.seg_time, interval
        )
        seg_time = self.settings.seg_time
        if self.mode == "copy" and keyframes.too_long(interval, seg_time) and not self.warned_keyframes:
            self.warned_keyframes = True
            event(
                log,
                "keyframe_interval_long",
                logging.WARNING,
                msg=(
                    f"camera {self.camera.id} sends a keyframe every {interval:g} s, longer than "
                    f"GN_SEG_TIME={seg_time:g} s: in copy mode segments cannot be shorter, so clips will be "
                    f"up to {interval - seg_time:.2g} s less precise; set the camera's GOP / I-frame "
                    f"interval to {seg_time:g} s (its frame rate × {seg_time:g}) or record with --mode encode"
                ),
                camera=self.camera.id,
                keyframe_interval=interval,
                seg_time=seg_time,
            )

    # ------------------------------------------------------------------ housekeeping
    def housekeeping(self) -> None:
        """Reconnect Redis if it was down, apply retention, publish health."""
        if not self.redis_ok and time.monotonic() >= self.next_redis_try:
            try:
                self.conn.ping()
            except redis.RedisError:
                self.next_redis_try = time.monotonic() + REDIS_RETRY_EVERY
            else:
                self.redis_ok = True
                if self._sync_index():
                    event(log, "redis_back", camera=self.camera.id, segments=len(self.segments))
        self.retain()
        self.publish()

    def retain(self) -> None:
        """Delete what retention allows; raise/clear the disk alarm."""
        t = time.time()
        pins = self._redis(self.index.pins)
        if pins is not None:
            self.pins = pins
        presses = journal.pending(self.settings.journal_dir, self.camera.id)
        windows = retention.windows_from(self.pins, presses, t)
        free = free_mb(self.dir)
        plan = retention.plan(
            [(s, self.sizes.get(s.name, 0)) for s in self.segments],
            windows,
            t,
            self.settings.buffer_seconds,
            free,
            self.settings.buffer_min_free_mb,
            pins_known=self.redis_ok,
        )
        if plan.delete:
            # Index first: a worker must never be handed a segment whose file is already gone.
            self._redis(lambda: self.index.remove(*plan.delete))
            retention.delete_files(self.dir, plan.delete)
            gone = set(plan.delete)
            self.segments = [s for s in self.segments if s not in gone]
            for seg in plan.delete:
                self.sizes.pop(seg.name, None)
            if plan.by_disk:
                event(
                    log,
                    "disk_guard",
                    logging.WARNING,
                    camera=self.camera.id,
                    deleted=plan.by_disk,
                    protected_deleted=plan.protected_dropped,
                    free_mb=round(free, 1),
                )
        self._disk_alarm(plan.disk_low, free)

    def _disk_alarm(self, low: bool, free: float) -> None:
        name = f"buffer_disk_low_{self.camera.id}"
        if low and self.alarm_up is not True:
            message = (
                f"only {free:.0f} MiB free on the buffer disk {self.settings.buffer_dir} "
                f"(floor GN_BUFFER_MIN_FREE_MB={self.settings.buffer_min_free_mb}): the oldest segments "
                "are being dropped; free space or lower GN_BUFFER_SECONDS"
            )
            event(log, "disk_low", logging.WARNING, msg=message, camera=self.camera.id)
            if self._redis(lambda: raise_alarm(self.conn, self.settings, name, message) or True):
                self.alarm_up = True
        elif not low and self.alarm_up is not False:
            cleared = self._redis(lambda: clear_alarm(self.conn, self.settings, name) or True)
            self.alarm_up = not cleared

    def publish(self) -> None:
        """Write the health hash (skipped while Redis is down)."""
        last = self.segments[-1].end if self.segments else None
        buffered = round(sum(s.duration for s in self.segments), 3)
        fields = {
            "state": self.state.value,
            "last_segment_end": last,
            "buffered_seconds": buffered,
            "keyframe_interval": self.keyframe_interval,
            "pid": self.proc.pid if self.proc is not None else None,
            "last_error": self.last_error,
        }
        self._redis(lambda: self.health.publish(time.time(), **fields))

    # ------------------------------------------------------------------ Redis, tolerant
    def _redis(self, fn: Callable[[], T]) -> T | None:
        """Run a Redis operation; if Redis is down, note it and carry on recording to disk."""
        if not self.redis_ok:
            return None
        try:
            return fn()
        except redis.RedisError as exc:
            self.redis_ok = False
            self.next_redis_try = time.monotonic() + REDIS_RETRY_EVERY
            event(
                log,
                "redis_down",
                logging.WARNING,
                msg=f"Redis is unreachable ({exc}); recording continues to disk, the index is rebuilt "
                "from disk when Redis is back",
                camera=self.camera.id,
            )
            return None

    def _sync_index(self) -> bool:
        """Make the Redis index exactly what is on disk."""
        segments = list(self.segments)
        return self._redis(lambda: self.index.replace_all(segments) or True) is True

    def _size(self, name: str) -> int:
        with contextlib.suppress(OSError):
            return (self.dir / name).stat().st_size
        return 0


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
