"""Synthetic video for the tests and the benchmarks, made with ffmpeg's lavfi sources."""

from __future__ import annotations

import csv
import subprocess
from pathlib import Path

from common.ffmpeg import base_args


def make_video(
    path: Path,
    seconds: float = 4,
    size: str = "320x240",
    fps: int = 30,
    gop: int | None = None,
    audio: bool = True,
    container_args: tuple[str, ...] = (),
) -> Path:
    """Write a test-pattern clip (H.264 + AAC tone) to `path`; returns it."""
    args = [
        *base_args(),
        "-f",
        "lavfi",
        "-i",
        f"testsrc2=size={size}:rate={fps}:duration={seconds}",
    ]
    if audio:
        args += ["-f", "lavfi", "-i", f"sine=frequency=440:sample_rate=48000:duration={seconds}"]
    args += ["-c:v", "libx264", "-preset", "ultrafast", "-pix_fmt", "yuv420p", "-g", str(gop or fps)]
    if audio:
        args += ["-c:a", "aac", "-b:a", "64k"]
    args += [*container_args, str(path)]
    subprocess.run(args, check=True, timeout=120)
    return path


def make_clip(path: Path, seconds: int, size: str, fps: int = 30, crf: int = 23) -> Path:
    """A camera-like clip for the benches: testsrc2 and a tone, H.264 (veryfast, `crf`) and AAC 96k."""
    args = [
        *base_args(),
        *("-f", "lavfi", "-i", f"testsrc2=size={size}:rate={fps}:duration={seconds}"),
        *("-f", "lavfi", "-i", f"sine=frequency=440:sample_rate=48000:duration={seconds}"),
        *("-c:v", "libx264", "-preset", "veryfast", "-crf", str(crf), "-g", str(fps), "-pix_fmt", "yuv420p"),
        *("-c:a", "aac", "-b:a", "96k", str(path)),
    ]
    subprocess.run(args, check=True)
    return path


def make_logo(path: Path, size: str = "200x80", color: str = "red") -> Path:
    """Write an opaque-colour PNG logo with an alpha channel."""
    args = [
        *base_args(),
        "-f",
        "lavfi",
        "-i",
        f"color=c={color}:s={size}:d=1,format=rgba",
        "-frames:v",
        "1",
        str(path),
    ]
    subprocess.run(args, check=True, timeout=60)
    return path


def corrupt(path: Path, out: Path) -> Path:
    """A copy of `path` with its middle overwritten by garbage and its tail cut off."""
    data = bytearray(path.read_bytes())
    mid = len(data) // 3
    data[mid : mid + 4096] = b"\xde\xad\xbe\xef" * 1024
    out.write_bytes(bytes(data[: len(data) * 2 // 3]))
    return out


def segment_stream(out: Path, seconds: int, size: str, fps: int) -> list[tuple[str, float, float]]:
    """One continuous stream (H.264 + AAC, 1 s GOP) cut into 1 s MPEG-TS segments in `out`, as the
    recorder cuts a camera's stream in copy mode; (name, start, end) relative to the first."""
    out.mkdir(parents=True, exist_ok=True)
    listing = out.parent / f"{out.name}-list.csv"
    subprocess.run(
        [*base_args(),
         "-f", "lavfi", "-i", f"testsrc2=size={size}:rate={fps}",
         "-f", "lavfi", "-i", "sine=frequency=440:sample_rate=48000",
         "-t", str(seconds), "-c:v", "libx264", "-preset", "ultrafast", "-pix_fmt", "yuv420p",
         "-g", str(fps), "-keyint_min", str(fps), "-sc_threshold", "0", "-c:a", "aac", "-b:a", "64k",
         "-f", "segment", "-segment_format", "mpegts", "-segment_time", "1",
         "-segment_list", str(listing), "-segment_list_type", "csv", str(out / "seg_%05d.ts")],
        check=True,
        timeout=3600,
    )  # fmt: skip
    rows = list(csv.reader(listing.read_text().splitlines()))
    listing.unlink()
    t0 = float(rows[0][1])
    return [(r[0], float(r[1]) - t0, float(r[2]) - t0) for r in rows]
