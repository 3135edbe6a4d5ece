"""A finished highlight as the render stage leaves it (watermarked clip, thumbnail, sidecar, its state in
Redis), for the web app's tests and benchmark."""

from __future__ import annotations

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
from harness.media import make_video


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
