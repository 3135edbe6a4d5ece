"""Helpers of the render tests: a raw clip + sidecar as the build stage leaves them, frames, workers."""

from __future__ import annotations

import re
import subprocess
import time
from pathlib import Path

from common import sidecar
from common.ffmpeg import probe
from common.fsutil import sha256_file
from common.journal import PressRecord
from common.settings import Settings
from harness.media import make_video
from tests.helpers import start_gravanois


def stage_clip(
    settings: Settings, seconds: float = 3, size: str = "320x240", at: float | None = None
) -> Path:
    """A raw clip and its sidecar in the clips dir, as `worker.build` writes them; returns the sidecar."""
    press = PressRecord(camera="cam1", at=at or time.time() - 60, pre=seconds - 1, post=1)
    clip = settings.clips_dir / sidecar.clip_name(press)
    settings.clips_dir.mkdir(parents=True, exist_ok=True)
    make_video(clip, seconds=seconds, size=size, fps=15)
    info = probe(clip)
    data = sidecar.new(
        press,
        clip,
        size_bytes=clip.stat().st_size,
        sha256=sha256_file(clip),
        meta=info.as_dict(),
        seg_time=1,
    )
    path = sidecar.path_for(clip)
    sidecar.save(path, data)
    return path


def frame(path: Path, at: float, w: int, h: int) -> bytes:
    """One decoded frame as raw rgb24 bytes."""
    args = ["ffmpeg", "-v", "error", "-i", str(path), "-ss", f"{at}", "-frames:v", "1"]
    out = subprocess.run([*args, "-f", "rawvideo", "-pix_fmt", "rgb24", "-"], capture_output=True, check=True)
    assert len(out.stdout) == w * h * 3, out.stderr
    return out.stdout


def region_diff(a: bytes, b: bytes, w: int, x0: int, y0: int, x1: int, y1: int) -> float:
    """Mean absolute byte difference of two rgb24 frames inside a rectangle."""
    total = count = 0
    for y in range(y0, y1):
        row = (y * w + x0) * 3
        for i in range(row, row + (x1 - x0) * 3):
            total += abs(a[i] - b[i])
            count += 1
    return total / count


def psnr(a: Path, b: Path) -> float:
    """Average PSNR (dB) of two videos, by ffmpeg's psnr filter."""
    args = [
        "ffmpeg",
        "-hide_banner",
        "-nostdin",
        "-i",
        str(a),
        "-i",
        str(b),
        "-lavfi",
        "psnr",
        "-f",
        "null",
        "-",
    ]
    err = subprocess.run(args, capture_output=True, text=True, check=True).stderr
    m = re.search(r"average:(\S+)", err)
    assert m, err
    return float("inf") if m.group(1) == "inf" else float(m.group(1))


def start_worker(settings: Settings, *extra: str) -> subprocess.Popen[bytes]:
    """A long-running `gravanois worker` on the render queue, with the scheduler."""
    return start_gravanois(
        settings, "worker", "--queues", "render", *extra, stderr=subprocess.PIPE, start_new_session=True
    )


def ffmpeg_pids(marker: str) -> list[int]:
    """Pids of live ffmpeg processes whose command line mentions `marker`."""
    pids = []
    for p in Path("/proc").iterdir():
        if not p.name.isdigit():
            continue
        try:
            cmd = (p / "cmdline").read_bytes().split(b"\0")
            state = (p / "stat").read_text().split()[2]
        except OSError:
            continue
        if cmd and cmd[0].endswith(b"ffmpeg") and marker.encode() in b" ".join(cmd) and state != "Z":
            pids.append(int(p.name))
    return pids
