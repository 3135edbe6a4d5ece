"""The watermark encoders the render budget chooses from, as ffmpeg arguments built by pure functions.

- software: libx264 at the box's preset and CRF.
- hardware: a Raspberry Pi 4's H.264 block through V4L2 (`h264_v4l2m2m`, /dev/video11): up to
  1920x1080 at 30 frames per second, bitrate-controlled (it has no CRF), yuv420p only. A Pi 5 has none.

Both put a keyframe every `GOP_SECONDS` (forced by time, as the pieces' recipe does: pieces cut on the
camera's keyframes then join by a stream copy), and both can scale a taller camera to 720 lines first
(the logo is sized from the output's width). The hardware path is used only where the device exists and
a short probe encode succeeds (`hardware_problem`); everywhere else the software path is the one.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from common.budget import Size, VideoEncoder
from common.ffmpeg import FFmpegError, base_args, frame_rate, probe_json, run
from common.watermark import Watermark, even, filtergraph, paced
from worker.engines import x264_args

HW_CODEC = "h264_v4l2m2m"
# The Pi 4's encoder device (the bcm2835 codec driver's `encode` node).
HW_DEVICE = Path("/dev/video11")
# What the Pi 4's H.264 block can encode (its firmware's limits).
HW_MAX_WIDTH, HW_MAX_HEIGHT, HW_MAX_FPS = 1920, 1080, 30.0
# The most it accepts; above ~17 Mbit/s 1080p30 looks no better (Raspberry Pi's camera documentation).
HW_MAX_KBPS = 25_000
# Bits per pixel per frame of the hardware encode: ~6 Mbit/s at 1080p30, ~2.8 at 720p30.
HW_BITS_PER_PIXEL = 0.1
# A keyframe every this many seconds in every watermarked piece (worker.progressive's PIECE_GOP_SECONDS).
GOP_SECONDS = 2.0
# Output height of the 720p size.
SMALL_HEIGHT = 720
PROBE_TIMEOUT = 20.0


@dataclass(frozen=True)
class Stream:
    """What a camera sends, read from its newest segment."""

    width: int
    height: int
    rate: str  # exact, like "30000/1001"

    @property
    def fps(self) -> float:
        """The frame rate as a number."""
        num, _, den = self.rate.partition("/")
        return float(num) / float(den or 1)


def video_stream(segment: Path) -> tuple[dict[str, Any], str | None]:
    """A segment's video stream as ffprobe reports it, and its exact frame rate (common.ffmpeg.frame_rate,
    like "30000/1001"; None when it has none); FFmpegError when it has no video."""
    for stream in probe_json(segment).get("streams", []):
        if stream.get("codec_type") == "video":
            rate = frame_rate(stream)
            return stream, f"{rate.numerator}/{rate.denominator}" if rate is not None else None
    raise FFmpegError(f"{segment.name} has no video")


def stream_of(segment: Path) -> Stream:
    """The video size and exact frame rate of a segment; FFmpegError when it has none."""
    stream, rate = video_stream(segment)
    width, height = int(stream.get("width") or 0), int(stream.get("height") or 0)
    if rate is None or not width or not height:
        raise FFmpegError(f"{segment.name} has no video size or frame rate")
    return Stream(width, height, rate)


def out_size(size: Size, width: int, height: int) -> tuple[int, int]:
    """The watermarked clip's size for a camera of `width` x `height` (720p only scales a taller one)."""
    if size is Size.P720 and height > SMALL_HEIGHT:
        return even(width * SMALL_HEIGHT / height), SMALL_HEIGHT
    return width, height


def sizes_for(height: int) -> list[Size]:
    """The sizes worth measuring for a camera this tall (720p only below its own height)."""
    return [Size.SOURCE, Size.P720] if height > SMALL_HEIGHT else [Size.SOURCE]


def hw_kbps(width: int, height: int, fps: float) -> int:
    """The hardware encode's bitrate in kbit/s, from its size and frame rate (at least 500, at most the
    encoder's maximum)."""
    kbps = int(width * height * max(fps, 1.0) * HW_BITS_PER_PIXEL / 1000)
    return max(500, min(HW_MAX_KBPS, kbps))


def hw_fits(width: int, height: int, fps: float) -> bool:
    """Whether the Pi 4's encoder takes this size and rate (either orientation)."""
    long, short = max(width, height), min(width, height)
    return long <= HW_MAX_WIDTH and short <= HW_MAX_HEIGHT and fps <= HW_MAX_FPS + 0.01


def keyframe_args(fps: float) -> list[str]:
    """A keyframe every GOP_SECONDS, forced by time (and the GOP length to match)."""
    gop = max(1, round(fps * GOP_SECONDS))
    return ["-g", str(gop), "-force_key_frames", f"expr:gte(t,n_forced*{GOP_SECONDS:g})"]


def codec_args(
    encoder: VideoEncoder, width: int, height: int, fps: float, preset: str, crf: int
) -> list[str]:
    """The video encoder's options for an output of `width` x `height` at `fps`."""
    if encoder is VideoEncoder.HARDWARE:
        kbps = hw_kbps(width, height, fps)
        return [
            "-c:v",
            HW_CODEC,
            "-b:v",
            f"{kbps}k",
            "-maxrate",
            f"{kbps}k",
            "-bufsize",
            f"{2 * kbps}k",
            "-pix_fmt",
            "yuv420p",
            *keyframe_args(fps),
            # The encoder sends its SPS/PPS once; each piece must carry them to be joined or played alone.
            "-bsf:v",
            "dump_extra=freq=keyframe",
        ]
    return [*x264_args(preset, crf), *keyframe_args(fps)]


def graph(wm: Watermark, rate: str, width: int, height: int, size: Size) -> str:
    """The -filter_complex of a watermarked piece: paced at the camera's rate, scaled to `size`, the
    logos burnt in (`[wm]` is the result, as common.watermark names it)."""
    w, h = out_size(size, width, height)
    if (w, h) == (width, height):
        return paced(rate, lambda video: filtergraph(wm, width, video=video))
    # Bilinear: a fifth cheaper than swscale's default bicubic, which costs as much as decoding the 1080p
    # stream (0.09 CPU-s per second of 1080p30 here); at a 1.5x reduction the difference is not seen.
    scale = f"scale={w}:{h}:flags=bilinear"
    return paced(rate, lambda video: f"[{video}]{scale}[small];" + filtergraph(wm, w, video="small"))


def probe_args() -> list[str]:
    """ffmpeg: one second of a synthetic 720p30 picture through the hardware encoder, thrown away."""
    return [
        *base_args(),
        "-f",
        "lavfi",
        "-i",
        "testsrc2=size=1280x720:rate=30",
        "-t",
        "1",
        *codec_args(VideoEncoder.HARDWARE, 1280, 720, 30.0, "ultrafast", 20),
        "-f",
        "null",
        "-",
    ]


@functools.cache
def hardware_problem() -> str:
    """Why the hardware encoder cannot be used on this box ('' when it can): no device, or a probe
    encode that fails. Asked once per process."""
    if not HW_DEVICE.exists():
        return f"no {HW_DEVICE} (a Raspberry Pi 4's H.264 encoder)"
    try:
        run(probe_args(), PROBE_TIMEOUT, what=f"{HW_CODEC} probe")
    except FFmpegError as exc:
        return str(exc)
    return ""
