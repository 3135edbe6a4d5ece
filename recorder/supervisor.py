"""ffmpeg supervision: one camera's ffmpeg child, started, read, watched, stopped and restarted.

ffmpeg is spawned from the main thread, so PR_SET_PDEATHSIG takes it down if the recorder is SIGKILLed.
Two small reader threads follow it: stdout carries the CSV list of closed parts, time-stamped on arrival
(`events`, read by the segment indexer), stderr is kept for error messages. The decisions (stall limit,
backoff, reachability of a network camera) are in `recorder.watchdog`.
"""

from __future__ import annotations

import os
import queue
import subprocess
import threading
import time
from collections import deque
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from common.log import get_logger, redact
from common.proc import spawn, stop
from common.settings import Camera, Settings
from common.watermark import Watermark
from recorder import presets
from recorder.probe import camera_audio
from recorder.watchdog import PROBE_EVERY, Backoff, Watchdog, probe_target, reachable, stall_limit

log = get_logger(__name__)

STOP_GRACE = 5.0
# Extra time for a new ffmpeg's first segment: connecting and probing the input (up to 5 s).
STARTUP_GRACE = 6.0
READER_JOIN = 3.0

# (run id, arrival time, list line; None when the run's stdout closed)
Event = tuple[str, float, str | None]


@dataclass(frozen=True)
class Failure:
    """Why the current ffmpeg run is over: it exited by itself, or the watchdog saw it stall."""

    reason: str
    stalled: bool = False


class Supervisor:
    """Owns one camera's ffmpeg: `start()` when `due()`, `check()` every turn, `stop()` at the end."""

    def __init__(
        self, settings: Settings, camera: Camera, mode: str, wm: Watermark | None, directory: Path
    ) -> None:
        self.settings = settings
        self.camera = camera
        self.mode = mode
        self.wm = wm
        self.dir = directory
        # A SimpleQueue: its blocking get is C code (queue.Queue's is a Python Condition), and the main
        # loop waits on it about once a second, for as long as the recorder runs.
        self.events: queue.SimpleQueue[Event] = queue.SimpleQueue()
        self.proc: subprocess.Popen[bytes] | None = None
        self.readers: list[threading.Thread] = []
        self.stderr_tail: deque[str] = deque(maxlen=8)
        self.run_id = ""
        self.runs = 0
        self.backoff = Backoff(cap=settings.restart_backoff_max)
        self.watchdog = Watchdog(limit=settings.effective_stall_seconds, startup=STARTUP_GRACE)
        self.next_start = 0.0
        self.target = probe_target(camera.source)

    @property
    def pid(self) -> int | None:
        """ffmpeg's pid while it runs."""
        return self.proc.pid if self.proc is not None else None

    def due(self, t: float) -> bool:
        """True when no ffmpeg runs and the restart delay is over."""
        return self.proc is None and t >= self.next_start

    def unreachable(self) -> str | None:
        """After a failure, why a network camera cannot be started yet (None: try it now).

        A camera that does not accept a TCP connection gets no ffmpeg: it is checked again in
        PROBE_EVERY seconds, so it records again within about that once it answers.
        """
        if self.target is None or not self.backoff.failures:
            return None
        why = reachable(self.target)
        if why is not None:
            self.next_start = time.monotonic() + PROBE_EVERY
            host, port = self.target
            return f"the camera at {host}:{port} does not answer ({why})"
        return None

    def start(self) -> str:
        """Spawn ffmpeg and its readers; returns the new run's id. Raises OSError if it cannot start."""
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
        script = presets.input_script(
            self.camera.source, self.settings.rtsp_transport, self.settings.rtsp_timeout_seconds
        )
        self.stderr_tail.clear()
        self.dir.mkdir(parents=True, exist_ok=True)
        stdin = subprocess.PIPE if script is not None else subprocess.DEVNULL
        self.proc = proc = spawn(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, stdin=stdin)
        if script is not None:
            assert proc.stdin is not None
            # A few hundred bytes fit in the pipe's buffer: this never blocks. Closing it ends the script.
            try:
                proc.stdin.write(script)
                proc.stdin.close()
            except BrokenPipeError:
                pass  # ffmpeg died at once; check() reports its exit
        assert proc.stdout is not None and proc.stderr is not None
        self.readers = [
            threading.Thread(target=self._read_list, args=(self.run_id, proc.stdout), daemon=True),
            threading.Thread(target=self._read_errors, args=(proc.stderr,), daemon=True),
        ]
        for reader in self.readers:
            reader.start()
        self.watchdog.started(time.monotonic())
        return self.run_id

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

    def check(self, t: float) -> Failure | None:
        """Has the running ffmpeg ended by itself, or stalled (alive, but no segment closed in time)?"""
        if self.proc is None:
            return None
        code = self.proc.poll()
        if code is not None:
            why = " | ".join(list(self.stderr_tail)[-2:]) or "no error output"
            return Failure(f"ffmpeg exited with code {code}: {why}")
        if self.watchdog.stalled(t):
            return Failure(f"no new segment for {self.watchdog.limit:g} s (stalled)", stalled=True)
        return None

    def stop(self) -> None:
        """Stop this run's ffmpeg (SIGINT closes the open part) and wait for its last list lines."""
        if self.proc is not None:
            stop(self.proc, grace=STOP_GRACE)
        for reader in self.readers:
            reader.join(READER_JOIN)
        self.proc = None
        self.readers = []

    def progress(self, t: float) -> None:
        """A segment closed: the watchdog is fed and the camera counts as working again."""
        self.watchdog.progress(t)
        self.backoff.reset()

    def keyframes_measured(self, interval: float) -> None:
        """Keyframes further apart than GN_SEG_TIME make segments longer: stretch the stall limit."""
        self.watchdog.limit = stall_limit(
            self.settings.effective_stall_seconds, self.settings.seg_time, interval
        )

    def schedule_restart(self) -> float:
        """After a failure: the delay before the next start (exponential backoff), now scheduled."""
        delay = self.backoff.next_delay()
        self.next_start = time.monotonic() + delay
        return delay
