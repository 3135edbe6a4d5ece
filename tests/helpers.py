"""Helpers every test module may use: running `gravanois`, polling with a deadline, fetching RQ jobs,
decoding a clip whole, the sidecar fields a stage leaves, a camera's health as its recorder writes it.

Plain functions live here, fixtures in conftest.py (pytest's advice: conftest is for fixtures).
"""

from __future__ import annotations

import os
import subprocess
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import redis
from rq.job import Job

from common import sidecar
from common.ffmpeg import FFMPEG, FFmpegError, run
from common.redisconn import SERIALIZER
from common.settings import Settings
from harness.repo import REPO, gn_env, gravanois_cmd
from recorder.health import Health

# The fields of the seed's sidecar (the build stage's), and those the render stage adds (docs/render.md).
SEED_FIELDS = (
    "type",
    "status",
    "created_at",
    "file_name",
    "size_bytes",
    "sha256",
    "meta",
    "pre_seconds",
    "post_seconds",
    "seg_time",
)
RENDER_FIELDS = ("updated_at", "wm_path", "thumbnail_path", "meta_wm")


def run_gravanois(
    settings: Settings, *args: str, timeout: float = 60, **kw: Any
) -> subprocess.CompletedProcess[str]:
    """Run one `gravanois` command to completion and capture its output."""
    return subprocess.run(
        gravanois_cmd(*args),
        env=gn_env(settings),
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=kw.pop("cwd", REPO),
        **kw,
    )


def start_gravanois(settings: Settings, *args: str, **popen_kw: Any) -> subprocess.Popen[bytes]:
    """Start a long-running `gravanois` command (output discarded unless `stdout`/`stderr` are given)."""
    popen_kw.setdefault("stdout", subprocess.DEVNULL)
    popen_kw.setdefault("stderr", subprocess.DEVNULL)
    return subprocess.Popen(gravanois_cmd(*args), env=gn_env(settings), cwd=REPO, **popen_kw)


def wait_for(what: str, check: Callable[[], Any], timeout: float = 30, every: float = 0.2) -> Any:
    """Poll `check` until it returns something truthy and return it; AssertionError naming `what`."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        assert time.monotonic() < deadline, f"timed out after {timeout} s waiting for {what}"
        time.sleep(every)


def as_bytes(reply: bytes | str) -> bytes:
    """A Redis reply as bytes (our clients read bytes; redis-py's types allow str too)."""
    return reply if isinstance(reply, bytes) else reply.encode()


def fetch(conn: redis.Redis, job_id: str) -> Job:
    """An RQ job of this project (JSON-serialized)."""
    return Job.fetch(job_id, connection=conn, serializer=SERIALIZER)


@contextmanager
def small_disk(path: Path, size_mb: int) -> Iterator[Path]:
    """A real, size-limited file system (tmpfs) mounted at `path`; skips the test where mounting is denied."""
    import pytest  # a test helper: only tests use this

    path.mkdir(parents=True, exist_ok=True)
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size_mb}m,mode=0777", "tmpfs", str(path)],
        capture_output=True,
        text=True,
    )
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a small tmpfs here (needs root): {mounted.stderr.strip()}")
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], capture_output=True)


def fill(path: Path, leave_mb: float) -> Path:
    """Write a filler file into `path` until about `leave_mb` MiB stay free; returns the filler."""
    filler = path / ".filler"
    stat = os.statvfs(path)
    free = stat.f_bavail * stat.f_frsize
    size = max(0, int(free - leave_mb * 1024 * 1024))
    block = b"\0" * (1024 * 1024)
    with open(filler, "wb") as fh:  # written for real: tmpfs allocates on write, not on truncate
        for _ in range(size // len(block)):
            fh.write(block)
    return filler


def highlight_files(out: Path, stem: str, status: str, mb: int, mtime: float) -> None:
    """A finished highlight's files in `out` (video of `mb` MiB, thumbnail, sidecar with `status`), all
    last modified at `mtime`."""
    (out / f"{stem}.mp4").write_bytes(b"\0" * (mb * 1024 * 1024))
    (out / f"{stem}.jpg").write_bytes(b"jpg")
    sidecar.save(out / f"{stem}.json", {"status": status, "file_name": f"{stem}.mp4"})
    for suffix in (".mp4", ".jpg", ".json"):
        os.utime(out / f"{stem}{suffix}", (mtime, mtime))


def decode_errors(path: Path, timeout: float = 120) -> str:
    """Decode the whole file; return ffmpeg's error output ('' when it decodes cleanly)."""
    args = [FFMPEG, "-hide_banner", "-nostdin", "-v", "error", "-i", str(path), "-f", "null", "-"]
    try:
        result = run(args, timeout, what=f"decode {Path(path).name}")
    except FFmpegError as exc:
        return str(exc)
    return result.stderr.decode(errors="replace").strip()


def publish_health(health: Health, t: float, **fields: Any) -> None:
    """Write a camera's health hash now, as its recorder does once a second (`Health.queue_publish`)."""
    pipe = health.conn.pipeline()
    health.queue_publish(pipe, t, **fields)
    pipe.execute()
