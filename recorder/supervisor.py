"""ffmpeg supervision: one camera's ffmpeg child, started, read, watched, stopped and restarted.

ffmpeg is spawned from the main thread, so PR_SET_PDEATHSIG takes it down if the recorder is SIGKILLed.
Its two output pipes are read by the main thread too, with poll(2) (`read()`): stdout carries the CSV list
of closed parts, time-stamped on arrival (read by the segment indexer), stderr is kept for error messages.
No reader thread: handing each line over from one would wake two threads instead of one, once a second
for as long as the recorder runs. The decisions (stall limit, backoff, reachability of a network camera)
are in `recorder.watchdog`.
"""

from __future__ import annotations

import os
import secrets
import select
import signal
import subprocess
import time
from collections import deque
from dataclasses import dataclass
from pathlib import Path

from common.log import fields, get_logger, redact
from common.proc import spawn, stop
from common.settings import Camera, Settings
from common.verdict import limit_for
from common.watermark import Watermark
from recorder import presets
from recorder.probe import camera_audio
from recorder.watchdog import PROBE_EVERY, Backoff, Watchdog, probe_target, reachable

log = get_logger(__name__)

STOP_GRACE = 5.0
# Extra time for a new ffmpeg's first segment: connecting and probing the input (up to 5 s).
STARTUP_GRACE = 6.0
# After ffmpeg is gone, how long its pipes may take to reach end of file (nothing else holds them).
DRAIN = 3.0
# ffmpeg's list lines and error lines are short; a pipe holds at most 64 KiB.
READ_SIZE = 65536

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
        self.proc: subprocess.Popen[bytes] | None = None
        # ffmpeg's open pipes: file descriptor → the bytes of a line not complete yet.
        self.poller = select.poll()
        self.pipes: dict[int, bytes] = {}
        self.list_fd = -1
        # List lines read while finding out why ffmpeg exited: `stop()` hands them on.
        self.last_lines: list[Event] = []
        self.stderr_tail: deque[str] = deque(maxlen=8)
        self.run_id = ""
        self.runs = 0
        # Run ids name segment files, which may outlive a reboot (a buffer on disk) where the same pid
        # comes back: a random part keeps them apart.
        self.token = secrets.token_hex(3)
        self.backoff = Backoff(cap=settings.restart_backoff_max)
        self.watchdog = Watchdog(limit=limit_for(settings), startup=STARTUP_GRACE)
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
        """Spawn ffmpeg; returns the new run's id (`<pid>-<n>-<token>`). Raises OSError if it cannot start."""
        self.runs += 1
        self.run_id = f"{os.getpid()}-{self.runs}-{self.token}"
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
        self.list_fd = proc.stdout.fileno()
        self.pipes = {self.list_fd: b"", proc.stderr.fileno(): b""}
        for fd in self.pipes:
            self.poller.register(fd, select.POLLIN)
        self.watchdog.started(time.monotonic())
        return self.run_id

    def read(self, timeout: float) -> list[Event]:
        """Wait up to `timeout` s for ffmpeg's list lines; returns those that came, with their arrival.

        The arrival time is taken as soon as poll(2) returns, before anything else is done. Error lines
        are kept (and logged at debug level) and do not end the wait; end of the list is an event with
        line None. With no ffmpeg running, this just waits.
        """
        deadline = time.monotonic() + timeout
        events: list[Event] = []
        while not events:
            ready = self.poller.poll(max(deadline - time.monotonic(), 0.0) * 1000)
            if not ready:
                break
            arrival = time.time()
            for fd, _ in ready:
                data = os.read(fd, READ_SIZE)
                *lines, self.pipes[fd] = (self.pipes[fd] + data).split(b"\n")
                if fd == self.list_fd:
                    events += [(self.run_id, arrival, line.decode(errors="replace")) for line in lines]
                else:
                    self._errors(lines)
                if not data:
                    self._closed(fd, arrival, events)
            if not self.pipes:
                break  # both ended: nothing more can come
        return events

    def _errors(self, lines: list[bytes]) -> None:
        for raw in lines:
            line = redact(raw.decode(errors="replace").strip())
            if line:
                self.stderr_tail.append(line)
                log.debug("ffmpeg: %s", line, extra=fields(camera=self.camera.id))

    def _closed(self, fd: int, arrival: float, events: list[Event]) -> None:
        """End of file on one of ffmpeg's pipes: its last unterminated line counts, then it is let go."""
        rest = self.pipes.pop(fd)
        self.poller.unregister(fd)
        if fd == self.list_fd:
            if rest:
                events.append((self.run_id, arrival, rest.decode(errors="replace")))
            events.append((self.run_id, arrival, None))
        elif rest:
            self._errors([rest])

    def check(self, t: float) -> Failure | None:
        """Has the running ffmpeg ended by itself, or stalled (alive, but no segment closed in time)?"""
        if self.proc is None:
            return None
        code = self.proc.poll()
        if code is not None:
            # Its last words are in the pipes still: read them (the list lines go with `stop()`).
            self.last_lines += self._drain(DRAIN)
            why = " | ".join(list(self.stderr_tail)[-2:]) or "no error output"
            return Failure(f"ffmpeg exited with code {code}: {why}")
        if self.watchdog.stalled(t):
            return Failure(f"no new segment for {self.watchdog.limit:g} s (stalled)", stalled=True)
        return None

    def stop(self) -> list[Event]:
        """Stop this run's ffmpeg (SIGINT closes the open part); returns the list lines it wrote meanwhile.

        Its pipes are read while it finishes, so it never blocks writing to them; SIGKILL after STOP_GRACE.
        """
        events, self.last_lines = self.last_lines, []
        proc = self.proc
        if proc is None:
            return events
        if proc.poll() is None:
            proc.send_signal(signal.SIGINT)
        # Its pipes end when it exits; whatever is left of the grace then, SIGKILL if it is still there.
        deadline = time.monotonic() + STOP_GRACE
        events += self._drain(STOP_GRACE)
        stop(proc, grace=max(deadline - time.monotonic(), 0.0))
        events += self._drain(DRAIN)
        for fd in self.pipes:
            self.poller.unregister(fd)
        self.pipes = {}
        for pipe in (proc.stdout, proc.stderr):
            if pipe is not None:
                pipe.close()
        self.proc = None
        return events

    def _drain(self, seconds: float) -> list[Event]:
        """Read ffmpeg's pipes until they end (it exited), for at most `seconds`."""
        events: list[Event] = []
        deadline = time.monotonic() + seconds
        while self.pipes and time.monotonic() < deadline:
            events += self.read(deadline - time.monotonic())
        return events

    def progress(self, t: float) -> None:
        """A segment closed: the watchdog is fed and the camera counts as working again."""
        self.watchdog.progress(t)
        self.backoff.reset()

    def keyframes_measured(self, interval: float) -> None:
        """Keyframes further apart than GN_SEG_TIME make segments longer: stretch the stall limit (the
        recorder publishes it: every reader of its verdict judges the camera by it)."""
        self.watchdog.limit = limit_for(self.settings, interval)

    def schedule_restart(self) -> float:
        """After a failure: the delay before the next start (exponential backoff), now scheduled."""
        delay = self.backoff.next_delay()
        self.next_start = time.monotonic() + delay
        return delay
