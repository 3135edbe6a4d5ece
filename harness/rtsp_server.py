"""A real RTSP camera on loopback for tests: GStreamer's RTSP server, run by /usr/bin/python3.

    server = RtspServer(gop_seconds=1).start()   # H.264, a keyframe every gop_seconds
    RtspServer(video="h265", audio="alaw", fps=25, gop_seconds=4)   # a budget camera's defaults
    server.url                                   # rtsp://127.0.0.1:<port>/cam
    server.stop(); server.start()                # the camera goes away and comes back on the same URL
    server.freeze(); server.thaw()               # the camera hangs, connections open, then goes on
    RtspServer(credentials=("admin", "pw"))      # a camera that answers 401 without them
    RtspServer(width=1920, height=1080, fps=30, loop_seconds=6)   # 1080p30 at next to no CPU

Also a context manager. `RtspServer.available()` says whether the system has the GStreamer bindings.
"""

from __future__ import annotations

import select
import signal
import subprocess
import time
from pathlib import Path
from types import TracebackType

from common.proc import spawn, stop
from harness.redis_server import free_port

SYSTEM_PYTHON = "/usr/bin/python3"
HELPER = Path(__file__).resolve().parent / "rtsp_gst_server.py"


class RtspServer:
    """One RTSP test camera (320x240 at 15 fps, H.264, no audio by default).

    `video`: h264 or h265; `audio`: none, aac, alaw or mulaw (True means aac); `slices` > 1 splits every
    frame, keyframes included, into that many slices (several packets per IDR).
    """

    def __init__(
        self,
        gop_seconds: float = 1.0,
        fps: int = 15,
        width: int = 320,
        height: int = 240,
        audio: bool | str = False,
        port: int | None = None,
        path: str = "/cam",
        video: str = "h264",
        slices: int = 1,
        credentials: tuple[str, str] | None = None,
        loop_seconds: float = 0.0,
    ) -> None:
        self.gop_frames = max(1, round(gop_seconds * fps))
        self.fps, self.width, self.height = fps, width, height
        self.audio = "aac" if audio is True else "none" if audio is False else audio
        self.video, self.slices, self.loop_seconds = video, slices, loop_seconds
        self.port = port or free_port()
        self.path = path
        # (user, password) the camera requires (HTTP basic), or None for an open camera.
        self.credentials = credentials
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        """Where a client reads the stream (with the credentials, if the camera requires them)."""
        auth = f"{self.credentials[0]}:{self.credentials[1]}@" if self.credentials else ""
        return f"rtsp://{auth}127.0.0.1:{self.port}{self.path}"

    @staticmethod
    def available() -> bool:
        """True when /usr/bin/python3 can import GStreamer's RTSP server bindings."""
        code = (
            "import gi; gi.require_version('GstRtspServer', '1.0'); from gi.repository import GstRtspServer"
        )
        try:
            return (
                subprocess.run([SYSTEM_PYTHON, "-c", code], capture_output=True, timeout=30).returncode == 0
            )
        except (OSError, subprocess.TimeoutExpired):
            return False

    def start(self, timeout: float = 20.0) -> RtspServer:
        """Start serving (again, on the same port) and wait until it listens."""
        if self.proc is not None:
            return self
        args = [SYSTEM_PYTHON, str(HELPER), "--port", str(self.port), "--path", self.path]
        args += ["--width", str(self.width), "--height", str(self.height), "--fps", str(self.fps)]
        args += ["--gop-frames", str(self.gop_frames), "--video", self.video, "--audio", self.audio]
        args += ["--slices", str(self.slices), "--loop-seconds", str(self.loop_seconds)]
        if self.credentials:
            args += ["--user", self.credentials[0], "--password", self.credentials[1]]
        # A loop is encoded before the server listens: a few CPU-seconds at 1080p.
        deadline = time.monotonic() + timeout + 10 * self.loop_seconds
        while True:
            proc = spawn(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL)
            assert proc.stdout is not None
            ready, _, _ = select.select([proc.stdout], [], [], max(0.1, deadline - time.monotonic()))
            line = proc.stdout.readline() if ready else b""
            if line.startswith(b"ready"):
                self.proc = proc
                return self
            stop(proc, grace=2, first=signal.SIGTERM)
            err = proc.stderr.read().decode(errors="replace") if proc.stderr else ""
            # The port may still be held by the previous server for a moment: retry until the deadline.
            if time.monotonic() > deadline:
                raise RuntimeError(f"RTSP test server did not start: {err.strip()[-500:]}")
            time.sleep(0.3)

    def stop(self) -> None:
        """Stop serving: connected clients lose the stream."""
        if self.proc is not None:
            self.thaw()
            stop(self.proc, grace=5, first=signal.SIGTERM)
            self.proc = None

    def freeze(self) -> None:
        """The camera hangs (SIGSTOP): its connections stay open and nothing flows, until `thaw()`."""
        assert self.proc is not None
        self.proc.send_signal(signal.SIGSTOP)

    def thaw(self) -> None:
        """A frozen camera goes on (SIGCONT)."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGCONT)

    def __enter__(self) -> RtspServer:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()
