"""A box installed the way deploy/install.sh lays it out (releases, `current`, boot.sh), run the way its
systemd unit runs it, for the update tests.

    releases = Releases(tmp_path)                 # wheels built from copies of this checkout
    a = releases.wheel("0.1.0")                   # as it is
    b = releases.wheel("0.1.1", patch=...)        # changed on purpose (a broken import, a mute recorder…)
    with InstalledBox(tmp_path, a, GN_CAMERAS=...) as box:
        box.update(b)                             # `current/bin/gravanois update WHEEL`

systemd is not this machine's init, so `Service` plays the unit's part: ExecStartPre (boot.sh), then
ExecStart (the launcher through `current`), started again whenever it exits (Restart=always).
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from deploy import release as rel
from harness.box import Box, _scan
from harness.repo import REPO, build_wheel, copy_checkout

# The Python a box's releases are made with (Debian's, as on a Pi).
SYSTEM_PYTHON = "/usr/bin/python3"


class Releases:
    """Wheels of this checkout, some changed, each with its own version."""

    def __init__(self, tmp: Path) -> None:
        self.tmp = tmp / "wheels"

    def wheel(self, version: str, patch: Callable[[Path], None] | None = None) -> Path:
        """A wheel of a copy of this checkout at `version`, after `patch(copy)` changed it."""
        src = copy_checkout(self.tmp / f"src-{version}")
        pyproject = src / "pyproject.toml"
        pyproject.write_text(pyproject.read_text().replace('version = "0.1.0"', f'version = "{version}"', 1))
        if patch is not None:
            patch(src)
        return build_wheel(src, self.tmp / f"out-{version}")


class InstalledBox(Box):
    """A box under `root/opt` with one release installed from `wheel`, supervised like systemd does."""

    def __init__(self, root: Path, wheel: Path, **settings: str) -> None:
        super().__init__(root, **settings)
        # The box runs its releases' own code only, never this checkout's.
        self.env.pop("PYTHONPATH", None)
        self.install_root = root / "opt"
        self.layout = rel.Layout(self.install_root)
        self.first = rel.install(self.layout, wheel, SYSTEM_PYTHON)
        self.layout.point("current", self.first.id)
        (self.install_root / "boot.sh").write_bytes((REPO / "deploy" / "boot.sh").read_bytes())
        (self.install_root / "boot.sh").chmod(0o755)
        self.service: subprocess.Popen[bytes] | None = None

    @property
    def bin(self) -> Path:
        return self.install_root / "current" / "bin"

    # ---- the unit: ExecStartPre, ExecStart, Restart=always

    def start(self) -> None:
        """The box's start at boot (and again each time supervisord exits, like Restart=always)."""
        launcher = '"$0/current/bin/python" -m deploy.supervise --env-file /dev/null'
        loop = f'while :; do "$0/boot.sh" "$0"; {launcher}; sleep 1; done'
        (self.root / "data").mkdir(parents=True, exist_ok=True)
        self.service = subprocess.Popen(
            ["sh", "-c", loop, str(self.install_root)],
            env=self.env,
            cwd=self.root / "data",  # WorkingDirectory=
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        self.supervisord = self.service  # Box's helpers check that the box was started

    def __enter__(self) -> InstalledBox:
        self.start()
        return self

    def supervisord_pid(self) -> int | None:
        pidfile = self.root / "data" / "run" / "supervisord.pid"
        try:
            pid = int(pidfile.read_text())
            os.kill(pid, 0)
            return pid
        except (OSError, ValueError):
            return None

    def stop(self) -> None:
        """systemctl stop: the service loop ends, supervisord stops its programs in order."""
        try:
            if self.service is not None and self.service.poll() is None:
                os.kill(self.service.pid, signal.SIGSTOP)  # the loop must not start it again
                pid = self.supervisord_pid()
                if pid is not None:
                    os.kill(pid, signal.SIGTERM)
                    deadline = time.monotonic() + 120
                    while self.supervisord_pid() == pid and time.monotonic() < deadline:
                        time.sleep(0.2)
        finally:
            # Also when the wait is cut short (a test's timeout): no box may outlive its test.
            self.kill_everything()

    def kill_everything(self) -> list[int]:
        """A power cut: every process of the box, the service loop included, SIGKILLed at once."""
        killed = []
        # Redis rewrites its command line and environment: found through supervisord.
        others = set(self.pids().values())
        if self.service is not None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.service.pid, signal.SIGKILL)
            self.service.wait()
        for pid in others | {int(line.split(":", 1)[0]) for line in _scan(str(self.root), {os.getpid()})}:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
                killed.append(pid)
        return killed

    def wait_started(self, timeout: float = 180) -> dict[str, int]:
        """Until supervisord runs every program it starts (none STARTING, BACKOFF…) and the camera records."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            status = self.ctl("status", timeout=30).stdout if self.supervisord_pid() else ""
            states = [line.split()[1] for line in status.splitlines() if len(line.split()) > 1]
            if states and all(state in ("RUNNING", "STOPPED") for state in states):
                break
            time.sleep(0.5)
        else:
            raise AssertionError(f"the box's programs did not all start within {timeout} s:\n{status}")
        self.wait_recording(seconds=2, timeout=timeout)
        return self.pids()

    def pids(self) -> dict[str, int]:
        """Running programs by supervisord's name."""
        return super().pids() if self.supervisord_pid() else {}

    # ---- what an operator does

    def gravanois(self, *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
        """The installed command (the release `current` names), as the wrapper runs it."""
        return subprocess.run(
            [str(self.bin / "gravanois"), "--env-file", "/dev/null", *args],
            env=self.env,
            capture_output=True,
            text=True,
            timeout=timeout,
            cwd=self.root,
        )

    def start_update(self, *args: str, **env: str) -> subprocess.Popen[str]:
        """`gravanois update …` started in the background (stderr piped: its steps and its verdict)."""
        return subprocess.Popen(
            [str(self.bin / "gravanois"), "--env-file", "/dev/null", "--log-format", "text", "update", *args],
            env={**self.env, **env},
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            cwd=self.root,
            start_new_session=True,
        )

    def current(self) -> str | None:
        return self.layout.link("current")

    def state(self) -> dict[str, Any]:
        return dict(self.layout.state.read())
