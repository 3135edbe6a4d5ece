"""Synthetic video for the tests and the benchmarks, made with ffmpeg's lavfi sources."""

from __future__ import annotations

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
