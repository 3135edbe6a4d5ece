"""The whole box run the way a venue runs it: deploy/supervise.py → supervisord → every process.

    with Box(tmp_path, GN_CAMERAS=...) as box:
        box.wait_recording()
        box.press("cam1")
        box.kill_everything()         # a power cut: every process of the box SIGKILLed at once
        box.start()                   # the normal start again

Fault tests use it so that recovery is what supervisord and the box do by themselves, never a step the
test takes on their behalf.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path
from types import TracebackType
from typing import Any

import redis

from common import keys
from common.redisconn import scored, text
from harness.cpubudget import CpuBudget
from harness.redis_server import free_port
from harness.repo import REPO, gravanois_cmd

LAUNCHER = REPO / "deploy" / "supervise.py"


def box_env(tmp_path: Path, **extra: str) -> dict[str, str]:
    """GN_* settings of a small box living entirely under tmp_path, with its own Redis port."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("GN_")}
    env.update(
        GN_DEVICE_ID=f"sv-{uuid.uuid4().hex[:8]}",
        GN_DATA_DIR=str(tmp_path / "data"),
        GN_BUFFER_DIR=str(tmp_path / "buffer"),
        GN_REDIS_URL=f"redis://127.0.0.1:{free_port()}/0",
        GN_LOG_FORMAT="json",
        # the web app listens on loopback only, on a port of its own
        GN_WEB_BIND="127.0.0.1",
        GN_WEB_PORT=str(free_port()),
    )
    env.update(extra)
    return env


def own_processes(marker: str, exclude: set[int], settle: float = 5.0) -> list[str]:
    """Processes whose command line or environment mentions `marker` (this test's tmp dir).

    Waits up to `settle` s for them to go: a child killed by its parent's death signal is reaped a moment
    after its parent.
    """
    deadline = time.monotonic() + settle
    while (found := _scan(marker, exclude)) and time.monotonic() < deadline:
        time.sleep(0.1)
    return found


def _scan(marker: str, exclude: set[int]) -> list[str]:
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) in exclude:
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            environ = (entry / "environ").read_bytes().decode(errors="replace")
            state = (entry / "stat").read_text().rsplit(")", 1)[1].split()[0]
        except (OSError, IndexError):
            continue
        if state != "Z" and (marker in cmdline or marker in environ):
            found.append(f"{entry.name}: {cmdline}")
    return found


class Box:
    """One box under supervisord, all of it below `root`."""

    def __init__(self, root: Path, **settings: str) -> None:
        self.root = root
        # An emulated CPU budget (harness/cpubudget.py), set before `start`: it holds the whole box,
        # supervisord and every program it starts; the commands run through `gravanois()` stay outside.
        self.cpu: CpuBudget | None = None
        self.env = box_env(root, **settings)
        self.device = self.env["GN_DEVICE_ID"]
        self.conn = redis.Redis.from_url(self.env["GN_REDIS_URL"], socket_timeout=5, socket_connect_timeout=2)
        self.supervisord: subprocess.Popen[bytes] | None = None

    # ---- lifecycle

    def start(self) -> None:
        """The normal start: the launcher (as systemd runs it at boot)."""
        self.supervisord = subprocess.Popen(
            [sys.executable, str(LAUNCHER), "--env-file", "/dev/null"],
            env=self.env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
            preexec_fn=self.cpu.preexec if self.cpu is not None else None,
        )

    def ctl(self, *args: str, timeout: float = 180) -> subprocess.CompletedProcess[str]:
        """supervisorctl through the launcher."""
        cmd = [sys.executable, str(LAUNCHER), "--env-file", "/dev/null", "ctl", *args]
        return subprocess.run(cmd, env=self.env, capture_output=True, text=True, timeout=timeout)

    def stop(self) -> None:
        """A clean stop (SIGTERM to supervisord), or SIGKILL to what is left after a minute."""
        try:
            if self.supervisord is not None and self.supervisord.poll() is None:
                self.supervisord.send_signal(signal.SIGTERM)
                with contextlib.suppress(subprocess.TimeoutExpired):
                    self.supervisord.wait(60)
        finally:
            self.kill_everything()  # also when a test's timeout cuts the wait short

    def pids(self) -> dict[str, int]:
        """Running programs by supervisord's name (redis rewrites its environment: found this way)."""
        out: dict[str, int] = {}
        if self.supervisord is None or self.supervisord.poll() is not None:
            return out
        for line in self.ctl("status", timeout=30).stdout.splitlines():
            match = re.match(r"^(\S+)\s+RUNNING\s+pid (\d+),", line)
            if match:
                out[match.group(1)] = int(match.group(2))
        return out

    def kill_everything(self) -> list[int]:
        """A power cut: SIGKILL every process of this box at once (supervisord, Redis, ffmpeg, all)."""
        pids = set(self.pids().values())
        # supervisord first, so that it cannot restart what dies a moment before it does.
        if self.supervisord is not None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.supervisord.pid, signal.SIGKILL)
        pids |= {int(line.split(":", 1)[0]) for line in _scan(str(self.root), {os.getpid()})}
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        if self.supervisord is not None:
            self.supervisord.wait()
        return sorted(pids)

    def __enter__(self) -> Box:
        self.start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    # ---- what a user does and sees

    def gravanois(self, *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
        """Run a `gravanois` command against this box."""
        return subprocess.run(
            gravanois_cmd(*args),
            env={**self.env, "PYTHONPATH": str(REPO)},
            capture_output=True,
            text=True,
            timeout=timeout,
            cwd=REPO,
        )

    def status(self) -> tuple[int, dict[str, Any]]:
        """`gravanois status --json`: exit code and snapshot."""
        res = self.gravanois("status", "--json", timeout=60)
        return res.returncode, json.loads(res.stdout)

    def redis_ok(self) -> bool:
        try:
            return bool(self.conn.ping())
        except redis.RedisError:
            return False

    def wait_recording(self, camera: str = "cam1", seconds: float = 0.0, timeout: float = 90) -> None:
        """Until the camera's recorder reports recording and holds `seconds` of segments."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                state = self.conn.hget(keys.camera_health(self.device, camera), "state")
                segments = keys.segments(self.device, camera)
                first = scored(self.conn.zrange(segments, 0, 0, withscores=True))
                last = scored(self.conn.zrange(segments, -1, -1, withscores=True))
                if state == b"recording" and first and last and last[0][1] - first[0][1] >= seconds:
                    return
            except redis.RedisError:
                pass
            time.sleep(0.5)
        raise AssertionError(f"camera {camera} is not recording after {timeout} s")

    def highlight_state(self, press_id: str) -> str:
        """The highlight's state as the pipeline noted it ('' when Redis cannot say)."""
        try:
            return text(self.conn.hget(keys.highlight(self.device, press_id), "state") or b"")
        except redis.RedisError:
            return ""

    @property
    def output_dir(self) -> Path:
        return self.root / "data" / "highlights"

    def finished(self, stem: str) -> bool:
        """True when the highlight's watermarked clip, thumbnail and final sidecar are in place."""
        side = self.output_dir / f"{stem}.json"
        if not side.is_file():
            return False
        try:
            data: dict[str, Any] = json.loads(side.read_text())
            return data.get("status") == "watermarked"
        except ValueError:
            return False
