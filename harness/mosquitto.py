"""A real Mosquitto broker on a free loopback port, with a password file and an ACL, for the fleet tests.

Each device may use only its own topics (`pattern readwrite grn/devices/%u/#`, the device id is its
user name), as docs/fleet.md advises; a `backend` user may use every device's, as the company's
backend does. `stop()` then `start()` keeps the port (a broker that goes away and comes back).
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path

from common.proc import stop
from harness.redis_server import free_port

BACKEND_USER, BACKEND_PASSWORD = "backend", "backend-pw"
ACL = """\
# The company's backend: every device's topics.
user backend
topic readwrite grn/devices/#

# A device: its own topics only (its user name is its device id).
pattern readwrite grn/devices/%u/#
"""


# Debian puts the broker in /usr/sbin, which a user's PATH may not hold.
BROKER = shutil.which("mosquitto") or shutil.which("mosquitto", path="/usr/sbin")


class Mosquitto:
    """Start/stop a mosquitto with users added by `user(name, password)` before `start()`."""

    def __init__(self, folder: Path) -> None:
        if BROKER is None:
            raise RuntimeError("mosquitto is not installed: sudo apt-get install -y mosquitto")
        self.broker = BROKER
        self.folder = folder
        folder.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        self.passwords = folder / "passwords"
        self.proc: subprocess.Popen[bytes] | None = None
        self.user(BACKEND_USER, BACKEND_PASSWORD)

    def user(self, name: str, password: str) -> Mosquitto:
        """Add a user (mosquitto_passwd writes the hashed password file)."""
        create = [] if self.passwords.exists() else ["-c"]
        subprocess.run(
            ["mosquitto_passwd", *create, "-b", str(self.passwords), name, password],
            check=True,
            capture_output=True,
        )
        return self

    def url(self, user: str, password: str) -> str:
        return f"mqtt://{user}:{password}@127.0.0.1:{self.port}"

    def start(self, timeout: float = 10.0) -> Mosquitto:
        (self.folder / "acl").write_text(ACL)
        conf = self.folder / "mosquitto.conf"
        # Started by root (as the tests are), mosquitto would become user `mosquitto`, who cannot read the
        # test's private folder.
        user = "user root\n" if os.geteuid() == 0 else ""
        conf.write_text(
            f"listener {self.port} 127.0.0.1\n"
            "allow_anonymous false\n"
            f"password_file {self.passwords}\n"
            f"acl_file {self.folder / 'acl'}\n"
            f"persistence false\n{user}"
            "log_dest stdout\nlog_type error\nlog_type warning\nlog_type notice\n"
        )
        self.passwords.chmod(0o600)
        with open(self.folder / "broker.log", "ab") as out:
            self.proc = subprocess.Popen([self.broker, "-c", str(conf)], stdout=out, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.5):
                    return self
            except OSError:
                assert self.proc.poll() is None, (self.folder / "broker.log").read_text()
                time.sleep(0.05)
        raise RuntimeError("mosquitto did not start listening")

    def stop(self) -> None:
        if self.proc is not None:
            stop(self.proc, grace=10, first=signal.SIGTERM)
        self.proc = None

    def __enter__(self) -> Mosquitto:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
