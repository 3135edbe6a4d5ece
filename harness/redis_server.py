"""A private redis-server on a free loopback port, for the tests and the benchmarks (and nothing else)."""

from __future__ import annotations

import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path

import redis

from common.proc import stop


def free_port() -> int:
    """A TCP port nobody listens on right now (loopback)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


class RedisServer:
    """Start/stop a real redis-server; `stop()` then `start()` keeps the port and (with AOF) the data."""

    def __init__(self, port: int | None = None, data_dir: Path | None = None, aof: bool = True) -> None:
        if shutil.which("redis-server") is None:
            raise RuntimeError("redis-server is not installed: sudo apt-get install -y redis-server")
        self.port = port or free_port()
        self.dir = Path(data_dir or tempfile.mkdtemp(prefix="gn-redis-"))
        self.dir.mkdir(parents=True, exist_ok=True)
        self.aof = aof
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self, timeout: float = 10) -> RedisServer:
        args = [
            "redis-server",
            "--port",
            str(self.port),
            "--bind",
            "127.0.0.1",
            "--dir",
            str(self.dir),
            "--save",
            "",
            "--appendonly",
            "yes" if self.aof else "no",
            "--protected-mode",
            "yes",
        ]
        self.proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        client = redis.Redis(port=self.port, socket_connect_timeout=0.5)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                if client.ping():
                    return self
            except redis.RedisError:
                time.sleep(0.05)
        raise RuntimeError(f"redis-server on port {self.port} did not start")

    def stop(self) -> None:
        if self.proc is not None:
            stop(self.proc, grace=10, first=signal.SIGTERM)
        self.proc = None

    def client(self) -> redis.Redis:
        return redis.Redis.from_url(self.url)
