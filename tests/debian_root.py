"""A fresh Debian 12 root (debootstrap) with its own mount namespace, to run deploy/install.sh in for real.

    root = DebianRoot(tmp_path / "deb12").create()   # debootstrap bookworm (minbase + systemd)
    with root.entered():                               # a private mount namespace: proc, dev, sys, run
        root.run("deploy/install.sh", cwd="/root/gravanois")

Mounts made inside (the installer's tmpfs buffer, /proc with hidepid) live in that namespace and vanish
with it: the machine running the tests is not touched. systemd does not run as init there (this machine
cannot boot one), so the box is started as its unit says, by hand (see `start_like_systemd`).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
from collections.abc import Iterator
from pathlib import Path

MIRROR = "http://deb.debian.org/debian"
# What a Raspberry Pi OS Lite image has beyond a minimal Debian: systemd (for systemctl enable and
# systemd-analyze verify), udev, sudo-less root, CA certificates for PyPI.
INCLUDE = "systemd,systemd-sysv,udev,ca-certificates,python3,python3-venv"


def can_make_roots() -> str | None:
    """Why Debian roots cannot be made here (None: they can)."""
    if os.geteuid() != 0:
        return "needs root (debootstrap, mount namespaces)"
    for tool in ("debootstrap", "unshare", "nsenter", "chroot"):
        if shutil.which(tool) is None:
            return f"{tool} is not installed"
    return None


class DebianRoot:
    """A debootstrapped Debian 12 tree and a long-lived private mount namespace to run commands in it."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.holder: subprocess.Popen[bytes] | None = None

    def create(self, timeout: float = 900) -> DebianRoot:
        done = subprocess.run(
            ["debootstrap", "--variant=minbase", f"--include={INCLUDE}", "bookworm", str(self.path), MIRROR],
            capture_output=True,
            text=True,
            timeout=timeout,
        )
        assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
        # This machine reaches the package registries through its own resolver and certificate
        # authority; a Pi uses the public ones. Only the sandbox needs these two files.
        shutil.copy("/etc/resolv.conf", self.path / "etc" / "resolv.conf")
        shutil.copy("/etc/ssl/certs/ca-certificates.crt", self.path / "etc" / "ssl" / "certs" / "host-ca.crt")
        return self

    @contextlib.contextmanager
    def entered(self) -> Iterator[DebianRoot]:
        """A private mount namespace held open by a sleeping process, with the root's special mounts."""
        self.holder = subprocess.Popen(
            ["unshare", "--mount", "--propagation", "private", "--fork", "sleep", "infinity"],
            start_new_session=True,
        )
        try:
            for mount in (
                ["mount", "-t", "proc", "proc", f"{self.path}/proc"],
                ["mount", "--rbind", "/dev", f"{self.path}/dev"],
                ["mount", "--rbind", "/sys", f"{self.path}/sys"],
                ["mount", "-t", "tmpfs", "tmpfs", f"{self.path}/run"],
            ):
                self._wait_ns()
                subprocess.run(["nsenter", "-t", str(self._ns_pid()), "-m", *mount], check=True)
            yield self
        finally:
            os.killpg(self.holder.pid, signal.SIGKILL)
            self.holder.wait()

    def _ns_pid(self) -> int:
        """The pid of the sleeping process inside the namespace (unshare --fork's child)."""
        assert self.holder is not None
        children = Path(f"/proc/{self.holder.pid}/task/{self.holder.pid}/children").read_text().split()
        return int(children[0])

    def _wait_ns(self) -> None:
        assert self.holder is not None
        for _ in range(100):
            with contextlib.suppress(FileNotFoundError, IndexError):
                self._ns_pid()
                return
            subprocess.run(["sleep", "0.05"])
        raise AssertionError("the namespace holder did not start")

    def command(self, *argv: str, cwd: str = "/") -> list[str]:
        """A command line running `argv` inside the root, in the namespace, as root."""
        env = ["env", "-i", "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "HOME=/root"]
        env += ["LANG=C.UTF-8", "PIP_CERT=/etc/ssl/certs/host-ca.crt"]
        inner = ["chroot", str(self.path), *env, "sh", "-c", 'cd "$0" && exec "$@"', cwd, *argv]
        return ["nsenter", "-t", str(self._ns_pid()), "-m", *inner]

    def run(self, *argv: str, cwd: str = "/", timeout: float = 900) -> subprocess.CompletedProcess[str]:
        """Run a command inside the root to completion."""
        return subprocess.run(self.command(*argv, cwd=cwd), capture_output=True, text=True, timeout=timeout)

    def start(self, *argv: str, cwd: str = "/") -> subprocess.Popen[bytes]:
        """Start a long-running command inside the root (its own session, output discarded)."""
        return subprocess.Popen(
            self.command(*argv, cwd=cwd),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )

    def file(self, path: str) -> Path:
        """A path inside the root, as seen from this machine."""
        return self.path / path.lstrip("/")
