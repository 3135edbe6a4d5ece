"""Helpers of the web app's tests: the web process (a finished highlight to show is harness/finished.py)."""

from __future__ import annotations

import http.client
import subprocess
from pathlib import Path

from common.settings import Settings
from harness.redis_server import free_port
from tests.helpers import start_gravanois, wait_for


class WebProc:
    """`gravanois web` on a free loopback port; a context manager."""

    def __init__(self, settings: Settings, log: Path, port: int | None = None) -> None:
        self.settings = settings
        self.port = port or free_port()
        self.log = log
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def __enter__(self) -> WebProc:
        self.log.parent.mkdir(parents=True, exist_ok=True)
        self._out = open(self.log, "wb")  # closed in __exit__, with the process
        self.proc = start_gravanois(
            self.settings,
            "web",
            "--bind",
            "127.0.0.1",
            "--port",
            str(self.port),
            stdout=self._out,
            stderr=self._out,
        )
        wait_for("the web app to answer", lambda: self.alive(), timeout=30)
        return self

    def alive(self) -> bool:
        assert self.proc is not None
        assert self.proc.poll() is None, self.log.read_text()
        try:
            return self.request("GET", "/healthz")[0] == 200
        except OSError:
            return False

    def request(
        self,
        method: str,
        path: str,
        headers: dict[str, str] | None = None,
        body: bytes | None = None,
        timeout: float = 20,
    ) -> tuple[int, dict[str, str], bytes]:
        """One request sent exactly as given (no client-side normalization of the path)."""
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=timeout)
        try:
            conn.request(method, path, body=body, headers=headers or {})
            resp = conn.getresponse()
            return resp.status, {k.lower(): v for k, v in resp.getheaders()}, resp.read()
        finally:
            conn.close()

    def __exit__(self, *exc: object) -> None:
        assert self.proc is not None
        self.proc.terminate()
        try:
            self.proc.wait(15)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self._out.close()
