"""Shared by the upload tests: a finished highlight in the output dir, the backend, a real RQ worker."""

from __future__ import annotations

import shutil
import time
from pathlib import Path

import pytest
import redis
from rq.job import Job

from common import sidecar
from common.ffmpeg import probe
from common.fsutil import sha256_file
from common.journal import PressRecord
from common.pipeline import job_id, queue, retry_policy
from common.redisconn import SERIALIZER
from common.settings import Settings, to_env
from common.timeutil import parse_iso
from worker.rqworker import BoxWorker

SECRET = "dev-secret-7f3a9c1e5b"
TOKEN = "tok-4e8d2a6c0b"
CLIENT = "client-0001"
VENUE = "6f1d2c3b-4a5e-4f60-8a7b-9c0d1e2f3a4b"


def upload_overrides(base: str, **extra: object) -> dict[str, object]:
    """Settings that turn uploads on towards `base`, with test-fast retries."""
    out: dict[str, object] = {
        "api_base": base,
        "api_token": TOKEN,
        "client_id": CLIENT,
        "venue_id": VENUE,
        "device_secret": SECRET,
        "max_attempts": 3,
        "retry_intervals": (0,),
        "keep_after_upload": False,
    }
    out.update(extra)
    return out


def make_highlight(settings: Settings, video: Path, thumb: Path, at: float | None = None) -> Path:
    """A rendered highlight as the render stage leaves it: mp4 + jpg + sidecar (status watermarked)."""
    press = PressRecord("cam1", at if at is not None else time.time(), 2.0, 1.0, "test")
    out = settings.output_dir
    out.mkdir(parents=True, exist_ok=True)
    mp4 = out / sidecar.clip_name(press)
    shutil.copyfile(video, mp4)
    jpg = mp4.with_suffix(".jpg")
    shutil.copyfile(thumb, jpg)
    info = probe(mp4).as_dict()
    data = sidecar.new(
        press,
        mp4,
        type="highlight",
        status="watermarked",
        size_bytes=mp4.stat().st_size,
        sha256=sha256_file(mp4),
        meta=info,
        meta_wm=info,
        wm_path=str(mp4),
        thumbnail_path=str(jpg),
    )
    path = sidecar.path_for(mp4)
    sidecar.save(path, data)
    return path


def job_id_for(settings: Settings, sidecar_path: Path) -> str:
    """The upload job id the render stage uses."""
    data = sidecar.load(sidecar_path)
    press = PressRecord(
        data["camera"], parse_iso(data["press_at"]), data["pre_seconds"], data["post_seconds"]
    )
    return job_id(settings.device_id, press.press_id, "upload")


def enqueue(settings: Settings, conn: redis.Redis, sidecar_path: Path) -> Job:
    """Enqueue the upload job exactly as the render stage does."""
    return queue(settings, "upload", conn).enqueue(
        "worker.upload.upload_highlight",
        str(sidecar_path),
        job_id=job_id_for(settings, sidecar_path),
        retry=retry_policy(settings),
    )


def run_worker(settings: Settings, conn: redis.Redis, monkeypatch: pytest.MonkeyPatch) -> None:
    """A real RQ worker (BoxWorker, forking work-horse) in burst mode on the upload queue."""
    for key, value in to_env(settings).items():
        monkeypatch.setenv(key, value)
    q = queue(settings, "upload", conn)
    BoxWorker([q], connection=conn, serializer=SERIALIZER, settings=settings).work(burst=True)
