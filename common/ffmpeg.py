"""Running ffmpeg and ffprobe: one helper each, with timeouts, errors as one readable line.

Argument lists are built by pure functions next to their users (`recorder/presets.py`,
`worker/render` …); this module only runs them.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from fractions import Fraction
from pathlib import Path
from typing import Any

from common import proc
from common.log import redact

FFMPEG = "ffmpeg"
FFPROBE = "ffprobe"
# Above this, a stream's "frame rate" is a clock, not frames (no court camera sends more).
MAX_FPS = 240.0


class FFmpegError(RuntimeError):
    """ffmpeg/ffprobe failed or timed out; the message ends with ffmpeg's last error lines."""


class MissingToolError(FFmpegError):
    """ffmpeg or ffprobe is not installed."""


@dataclass(frozen=True)
class MediaInfo:
    """What the sidecar's `meta` holds: codec, width, height, fps, duration_sec."""

    codec: str
    width: int
    height: int
    fps: float
    duration_sec: float

    def as_dict(self) -> dict[str, Any]:
        """The sidecar form."""
        return asdict(self)


def require_tools() -> None:
    """Raise a clear error when ffmpeg or ffprobe is missing."""
    for tool in (FFMPEG, FFPROBE):
        if shutil.which(tool) is None:
            raise MissingToolError(f"{tool} is not installed: run `sudo apt-get install -y ffmpeg`")


def base_args(loglevel: str = "error") -> list[str]:
    """The start of every ffmpeg command line: quiet, no stdin, overwrite."""
    return [FFMPEG, "-hide_banner", "-nostdin", "-loglevel", loglevel, "-y"]


def mp4_copy_args(out: Path, index_room: int | None = None) -> list[str]:
    """The output half of a stream copy into MP4: first video and any audio, index at the front (phones
    start playing before the whole file has arrived).

    `index_room`: bytes reserved for the index at the front while the media is written behind it, for
    an input that is still arriving (worker.streamjoin); else `+faststart` moves it there at the end.
    """
    front = ["-moov_size", str(index_room)] if index_room else ["-movflags", "+faststart"]
    return ["-map", "0:v:0", "-map", "0:a?", "-c", "copy", *front, "-f", "mp4", str(out)]


def run(
    args: Sequence[str], timeout: float, what: str = "ffmpeg", stdin: bytes | None = None
) -> subprocess.CompletedProcess[bytes]:
    """Run a command to completion (killed with us, killed after `timeout`); FFmpegError on failure.

    `stdin`: bytes the command reads (e.g. a camera URL with its password, kept out of `ps`)."""
    feed = subprocess.PIPE if stdin is not None else subprocess.DEVNULL
    try:
        child = proc.spawn(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, stdin=feed)
    except FileNotFoundError:
        raise MissingToolError(f"{args[0]} is not installed: run `sudo apt-get install -y ffmpeg`") from None
    try:
        out, err = child.communicate(input=stdin, timeout=timeout)
    except subprocess.TimeoutExpired:
        child.kill()
        out, err = child.communicate()
        raise FFmpegError(f"{what} timed out after {timeout:g} s: {tail(err)}") from None
    except BaseException:
        child.kill()
        child.wait()
        raise
    if child.returncode != 0:
        raise FFmpegError(f"{what} failed (exit {child.returncode}): {tail(err)}")
    return subprocess.CompletedProcess(list(args), child.returncode, out, err)


def tail(stderr: bytes | str | None, lines: int = 3) -> str:
    """The last few non-empty lines of ffmpeg's stderr, joined, redacted."""
    if not stderr:
        return "no error output"
    text = stderr.decode(errors="replace") if isinstance(stderr, bytes) else stderr
    kept = [ln.strip() for ln in text.splitlines() if ln.strip()][-lines:]
    return redact(" | ".join(kept)) or "no error output"


def probe_json(path: Path, timeout: float = 30) -> dict[str, Any]:
    """ffprobe's JSON (format + streams) of a file."""
    args = [FFPROBE, "-v", "error", "-print_format", "json", "-show_format", "-show_streams", str(path)]
    info: dict[str, Any] = json.loads(run(args, timeout, what=f"ffprobe {Path(path).name}").stdout or b"{}")
    return info


def probe(path: Path, timeout: float = 30) -> MediaInfo:
    """Codec, size, frame rate and duration of a video file."""
    data = probe_json(path, timeout)
    video = next((s for s in data.get("streams", []) if s.get("codec_type") == "video"), None)
    if video is None:
        raise FFmpegError(f"{Path(path).name} has no video stream")
    duration = float(data.get("format", {}).get("duration") or video.get("duration") or 0.0)
    return MediaInfo(
        codec=str(video.get("codec_name", "unknown")),
        width=int(video.get("width", 0)),
        height=int(video.get("height", 0)),
        fps=stream_fps(video),
        duration_sec=round(duration, 3),
    )


def frame_rate(stream: Mapping[str, Any]) -> Fraction | None:
    """A video stream's frame rate, exact, from ffprobe's stream fields; None when it has none.

    ffprobe's `r_frame_rate` (the rate its timestamps tick at), unless it is not a camera's rate at all
    (a 90 kHz clock); then the average. The average alone is off for a camera that sends an IDR in
    slices (two packets a hair apart count as two frames: 25.49 for 25).
    """
    rates = (_fraction(stream.get(key)) for key in ("r_frame_rate", "avg_frame_rate"))
    return next((r for r in rates if r is not None and 0 < r <= MAX_FPS), None)


def stream_fps(stream: Mapping[str, Any]) -> float:
    """`frame_rate` as the sidecar's `fps` (three decimals; 0.0 when the stream has none)."""
    rate = frame_rate(stream)
    return round(float(rate), 3) if rate is not None else 0.0


def _fraction(text: Any) -> Fraction | None:
    """A rate as ffprobe writes it ("30000/1001", "25/1", "0/0"), or None when it is not one."""
    num, _, den = str(text or "").partition("/")
    try:
        return Fraction(int(num), int(den or 1))
    except (ValueError, ZeroDivisionError):
        return None
