"""A real Mosquitto broker on a free loopback port, with a password file and an ACL, for the fleet tests.

Each device may use only its own topics (`pattern readwrite grn/devices/%u/#`, the device id is its
user name), as docs/fleet.md advises; a `backend` user may use every device's, as the company's
backend does. `stop()` then `start()` keeps the port (a broker that goes away and comes back).
`Mosquitto(folder, tls=True)` listens with TLS only, its certificate (for 127.0.0.1) signed by a CA of
its own made with `openssl` (`ca_file`): the URLs it gives are `mqtts://`.
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

    def __init__(self, folder: Path, tls: bool = False) -> None:
        if BROKER is None:
            raise RuntimeError("mosquitto is not installed: sudo apt-get install -y mosquitto")
        self.broker = BROKER
        self.folder = folder
        folder.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        self.passwords = folder / "passwords"
        self.proc: subprocess.Popen[bytes] | None = None
        self.user(BACKEND_USER, BACKEND_PASSWORD)
        self.ca_file: Path | None = make_certificates(folder / "tls") if tls else None

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
        scheme = "mqtts" if self.ca_file else "mqtt"
        return f"{scheme}://{user}:{password}@127.0.0.1:{self.port}"

    def start(self, timeout: float = 10.0) -> Mosquitto:
        (self.folder / "acl").write_text(ACL)
        conf = self.folder / "mosquitto.conf"
        # Started by root (as the tests are), mosquitto would become user `mosquitto`, who cannot read the
        # test's private folder.
        user = "user root\n" if os.geteuid() == 0 else ""
        tls = ""
        if self.ca_file is not None:
            d = self.ca_file.parent
            tls = f"cafile {self.ca_file}\ncertfile {d / 'broker.crt'}\nkeyfile {d / 'broker.key'}\n"
        conf.write_text(
            f"listener {self.port} 127.0.0.1\n{tls}"
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


def make_certificates(folder: Path) -> Path:
    """A CA and a broker certificate for 127.0.0.1 signed by it (openssl); returns the CA's file."""
    folder.mkdir(parents=True, exist_ok=True)

    def openssl(*args: str) -> None:
        subprocess.run(["openssl", *args], cwd=folder, check=True, capture_output=True, timeout=60)

    days, key = "2", ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]
    openssl(
        "req", "-x509", *key, "-keyout", "ca.key", "-out", "ca.crt", "-days", days, "-subj", "/CN=test CA"
    )
    openssl("req", *key, "-keyout", "broker.key", "-out", "broker.csr", "-subj", "/CN=127.0.0.1")
    (folder / "san.ext").write_text("subjectAltName=IP:127.0.0.1\n")
    openssl("x509", "-req", "-in", "broker.csr", "-CA", "ca.crt", "-CAkey", "ca.key", "-CAcreateserial",
            "-out", "broker.crt", "-days", days, "-extfile", "san.ext")  # fmt: skip
    return folder / "ca.crt"
