"""Trigger/build test helpers: real MPEG-TS segments made by ffmpeg, indexed like the recorder does."""

from __future__ import annotations

import csv
import subprocess
import time
import uuid
from pathlib import Path

import redis

from common.segments import Segment, SegmentIndex
from common.settings import Settings
from harness.repo import REPO, gn_env, gravanois_cmd


def make_segments(
    settings: Settings,
    conn: redis.Redis,
    camera: str,
    start: float,
    seconds: int,
    gop: float = 1.0,
    index: bool = True,
    run: str | None = None,
) -> list[Segment]:
    """`seconds` of one continuous 320x240@15 H.264+AAC stream cut into MPEG-TS segments (as the recorder
    does in copy mode: cut at keyframes, timestamps kept), indexed with wall-clock times from `start` and
    one recording run id (`run`, else a new one: each call is another run of the recorder's ffmpeg)."""
    run = run or f"test-{uuid.uuid4().hex[:8]}"
    out = settings.camera_buffer_dir(camera)
    out.mkdir(parents=True, exist_ok=True)
    listing = out / f"list-{time.monotonic_ns()}.csv"
    prefix = f"seg-{int(start * 1000)}-"
    args = [
        "ffmpeg", "-hide_banner", "-nostdin", "-loglevel", "error", "-y",
        "-f", "lavfi", "-i", "testsrc2=size=320x240:rate=15",
        "-f", "lavfi", "-i", "sine=frequency=440:sample_rate=44100",
        "-t", str(seconds),
        "-c:v", "libx264", "-preset", "ultrafast", "-pix_fmt", "yuv420p",
        "-g", str(max(1, round(gop * 15))), "-keyint_min", str(max(1, round(gop * 15))), "-sc_threshold", "0",
        "-c:a", "aac", "-b:a", "64k",
        "-f", "segment", "-segment_format", "mpegts", "-segment_time", str(settings.seg_time),
        "-segment_list", str(listing), "-segment_list_type", "csv",
        str(out / f"{prefix}%05d.ts"),
    ]  # fmt: skip
    subprocess.run(args, check=True, capture_output=True, timeout=120)
    rows = list(csv.reader(listing.read_text().splitlines()))
    listing.unlink()
    t0 = float(rows[0][1])
    segments = [Segment(start + float(r[1]) - t0, start + float(r[2]) - t0, r[0], run) for r in rows]
    if index:
        SegmentIndex(conn, settings.device_id, camera).add(*segments)
    return segments


def run_build_worker(
    settings: Settings, *stages: str, timeout: float = 90
) -> subprocess.CompletedProcess[str]:
    """`gravanois worker --queues build --burst` (with the scheduler, so due jobs are moved first)."""
    return subprocess.run(
        gravanois_cmd("worker", "--queues", ",".join(stages or ("build",)), "--burst"),
        env=gn_env(settings),
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def files_under(root: Path) -> set[str]:
    """Every file below `root`, relative."""
    return {str(p.relative_to(root)) for p in root.rglob("*") if p.is_file()}
