"""Helpers of the web app's tests: a finished highlight as the render stage leaves it, the web process."""

from __future__ import annotations

import http.client
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

import redis

from common import sidecar
from common.ffmpeg import base_args, probe
from common.fsutil import sha256_file
from common.highlights import note_highlight
from common.journal import PressRecord
from common.pipeline import HighlightState, SidecarStatus
from common.settings import Settings
from tests.helpers import start_gravanois, wait_for
from tests.media import make_video
from tests.redis_server import free_port


@dataclass(frozen=True)
class Finished:
    """A finished highlight's id and files."""

    id: str
    video: Path
    thumb: Path
    sidecar: Path


def finished_highlight(
    settings: Settings, conn: redis.Redis, camera: str = "cam1", at: float | None = None, seconds: float = 3
) -> Finished:
    """Watermarked clip, thumbnail and sidecar in the output dir, and the `done` state in Redis.

    The same files and fields `worker.render` writes (the clip is ffmpeg's test pattern).
    """
    press = PressRecord(camera=camera, at=at or time.time() - 30, pre=seconds - 1, post=1)
    out = settings.output_dir
    out.mkdir(parents=True, exist_ok=True)
    stem = Path(sidecar.clip_name(press)).stem
    video = make_video(out / f"{stem}.mp4", seconds=seconds, fps=15)
    thumb = out / f"{stem}.jpg"
    subprocess.run(
        [*base_args(), "-i", str(video), "-frames:v", "1", str(thumb)], check=True, capture_output=True
    )
    meta = probe(video).as_dict()
    data = sidecar.new(press, video, size_bytes=video.stat().st_size, sha256=sha256_file(video), meta=meta)
    data.update(
        type="highlight_wm",
        status=SidecarStatus.WATERMARKED.value,
        wm_path=str(video),
        thumbnail_path=str(thumb),
        meta_wm=meta,
        wm_sha256=sha256_file(video),
        wm_size_bytes=video.stat().st_size,
    )
    path = out / f"{stem}.json"
    sidecar.save(path, data)
    note_highlight(conn, settings, press.press_id, press.at, state=HighlightState.DONE, camera=camera)
    return Finished(press.press_id, video, thumb, path)


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
        self, method: str, path: str, headers: dict[str, str] | None = None, body: bytes | None = None
    ) -> tuple[int, dict[str, str], bytes]:
        """One request sent exactly as given (no client-side normalization of the path)."""
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=20)
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
