"""Watermark engines behind one interface: ffmpeg (default, one run) and MoviePy (optional extra).

`render(job, progress)` writes `job.dst` (and `job.vertical_dst`) completely or raises RenderError;
the caller owns temp names and the atomic rename. Argument lists are built by pure functions.
"""

from __future__ import annotations

import contextlib
import subprocess
import tempfile
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from common import proc
from common.ffmpeg import base_args, tail
from common.log import event, get_logger
from common.watermark import Watermark, filtergraph, input_args, logo_width, outputs, paced, vertical_size

log = get_logger(__name__)

Progress = Callable[[float], None]
HW_ENCODERS = ("h264_v4l2m2m",)


class RenderError(RuntimeError):
    """The watermark run failed; the message is one readable line (ffmpeg's last error lines)."""


@dataclass(frozen=True)
class RenderJob:
    """One watermark run: source clip, destination(s), watermark and encoder settings."""

    src: Path
    dst: Path
    wm: Watermark
    width: int
    height: int
    duration: float
    fps: float = 30.0
    crf: int = 20
    preset: str = "ultrafast"
    encoder: str = "libx264"
    vertical_dst: Path | None = None
    overlay: bool = True  # False: plain re-encode (the benchmark's floor)
    timeout: float = 3600.0


class Engine(Protocol):
    """What the render job needs from an engine."""

    name: str

    def render(self, job: RenderJob, progress: Progress | None = None) -> None:
        """Write job.dst (and job.vertical_dst) or raise RenderError."""


def hw_bitrate(width: int, height: int, fps: float) -> str:
    """A bitrate for hardware encoders, which have no CRF: ~0.1 bit per pixel per frame."""
    return f"{max(500, int(width * height * max(fps, 1) * 0.1 / 1000))}k"


def x264_args(preset: str, crf: int) -> list[str]:
    """libx264 at a preset and CRF, in the pixel format every phone plays."""
    return ["-c:v", "libx264", "-preset", preset, "-crf", str(crf), "-pix_fmt", "yuv420p"]


def video_codec_args(job: RenderJob, encoder: str, width: int, height: int) -> list[str]:
    """Encoder options for one output."""
    if encoder in HW_ENCODERS:
        return ["-c:v", encoder, "-b:v", hw_bitrate(width, height, job.fps), "-pix_fmt", "yuv420p"]
    return x264_args(job.preset, job.crf)


def ffmpeg_args(job: RenderJob, encoder: str | None = None) -> list[str]:
    """The whole ffmpeg command of a render: overlay (or plain re-encode), audio copied, +faststart."""
    encoder = encoder or job.encoder
    args = [*base_args(), "-progress", "pipe:1", "-nostats", "-i", str(job.src)]
    vertical = job.vertical_dst is not None
    if job.overlay:
        args += input_args(job.wm)

        def graph(video: str) -> str:
            return filtergraph(job.wm, job.width, job.height, video=video, vertical=vertical)

        args += ["-filter_complex", paced(job.fps, graph) if job.fps > 0 else graph("0:v")]
        maps = outputs(vertical=vertical)
    else:
        maps = ["0:v:0"]
    targets = [(job.dst, job.width, job.height)]
    if job.vertical_dst is not None and job.overlay:
        targets.append((job.vertical_dst, *vertical_size(job.width, job.height)))
    for label, (dst, w, h) in zip(maps, targets, strict=True):
        args += ["-map", label, "-map", "0:a?"]
        args += video_codec_args(job, encoder, w, h)
        args += ["-c:a", "copy", "-movflags", "+faststart", "-f", "mp4", str(dst)]
    return args


def parse_progress(line: str, duration: float) -> float | None:
    """Percent done from one `-progress` line (`out_time_us=…`, `progress=end`), else None."""
    key, _, value = line.strip().partition("=")
    if key == "progress" and value == "end":
        return 100.0
    if key in ("out_time_us", "out_time_ms") and duration > 0:
        # Both keys carry microseconds (ffmpeg's historical naming).
        with contextlib.suppress(ValueError):
            return max(0.0, min(100.0, int(value) / 1e6 / duration * 100))
    return None


def thumbnail_args(src: Path, dst: Path, at: float, width: int = 0) -> list[str]:
    """One JPEG frame at `at` seconds (fast seek before the input), scaled to `width` if given."""
    args = [*base_args(), "-ss", f"{max(0.0, at):.3f}", "-i", str(src), "-frames:v", "1"]
    if width:
        args += ["-vf", f"scale={width}:-2"]
    return [*args, "-q:v", "3", "-f", "image2", "-update", "1", str(dst)]


class FFmpegEngine:
    """One ffmpeg run per highlight; a hardware encoder that fails falls back to libx264."""

    name = "ffmpeg"

    def render(self, job: RenderJob, progress: Progress | None = None) -> None:
        """Run ffmpeg; on a failing hardware encoder, run again with libx264."""
        if job.encoder in HW_ENCODERS:
            try:
                self.run(ffmpeg_args(job), job, progress)
                return
            except RenderError as exc:
                event(log, "wm_encoder_fallback", encoder=job.encoder, error=str(exc))
        self.run(ffmpeg_args(job, "libx264"), job, progress)

    def run(self, args: list[str], job: RenderJob, progress: Progress | None) -> None:
        """Run one command, reporting progress; RenderError with ffmpeg's last lines on failure."""
        with tempfile.TemporaryFile() as err:
            child = proc.spawn(args, stdout=subprocess.PIPE, stderr=err, stdin=subprocess.DEVNULL)
            timer = threading.Timer(job.timeout, child.kill)
            timer.start()
            try:
                assert child.stdout is not None
                for raw in child.stdout:
                    pct = parse_progress(raw.decode(errors="replace"), job.duration)
                    if pct is not None and progress is not None:
                        progress(pct)
                code = child.wait()
            finally:
                timer.cancel()
                # A job timeout or a stop lands here with ffmpeg still running: never leave it behind.
                if child.poll() is None:
                    proc.stop(child, grace=2)
            if code != 0:
                err.seek(0)
                raise RenderError(
                    f"ffmpeg watermark of {job.src.name} failed (exit {code}): {tail(err.read())}"
                )


class MoviePyEngine:
    """The seed's method (MoviePy compositing), kept for parity checks; needs the `moviepy` extra."""

    name = "moviepy"

    def render(self, job: RenderJob, progress: Progress | None = None) -> None:
        """Composite the logo(s) with MoviePy and encode with libx264 at the same CRF/preset."""
        try:
            from moviepy import CompositeVideoClip, ImageClip, VideoFileClip
        except ImportError as exc:  # the optional extra is missing
            raise RenderError(f"GN_WM_ENGINE=moviepy needs the moviepy package: {exc}") from None
        clip = VideoFileClip(str(job.src))
        try:
            targets: list[tuple[object, Path]] = []
            base = clip
            if job.overlay:
                targets.append((self.composite(clip, job, ImageClip, CompositeVideoClip), job.dst))
                if job.vertical_dst is not None:
                    cw, ch = vertical_size(job.width, job.height)
                    crop = clip.cropped(
                        x1=(job.width - cw) // 2, y1=(job.height - ch) // 2, width=cw, height=ch
                    )
                    targets.append(
                        (self.composite(crop, job, ImageClip, CompositeVideoClip), job.vertical_dst)
                    )
            else:
                targets.append((base, job.dst))
            for video, dst in targets:
                audio_tmp = dst.with_name(dst.name + ".aac.m4a")
                try:
                    video.write_videofile(  # type: ignore[attr-defined]
                        str(dst),
                        codec="libx264",
                        preset=job.preset,
                        ffmpeg_params=[
                            "-crf",
                            str(job.crf),
                            "-pix_fmt",
                            "yuv420p",
                            "-movflags",
                            "+faststart",
                        ],
                        audio_codec="aac",
                        temp_audiofile=str(audio_tmp),
                        logger=None,
                    )
                except Exception as exc:
                    raise RenderError(f"moviepy watermark of {job.src.name} failed: {exc}") from exc
                finally:
                    with contextlib.suppress(FileNotFoundError):
                        audio_tmp.unlink()
                if progress is not None:
                    progress(100.0)
        finally:
            clip.close()

    @staticmethod
    def composite(video: object, job: RenderJob, image_clip: type, composite_clip: type) -> object:
        """The video with its logo(s) placed as the ffmpeg engine places them."""
        from common.watermark import OPPOSITE

        width, height = video.size  # type: ignore[attr-defined]
        layers = [video]
        for logo, corner in zip(job.wm.logos, (job.wm.position, OPPOSITE[job.wm.position]), strict=False):
            img = image_clip(str(logo)).resized(width=logo_width(width, job.wm.rel_width))
            # Same rounding as ffmpeg's `scale=W:-2` (even height), so the logo sits on the same pixels.
            lw = img.size[0]
            lh = max(2, round(img.size[1] / 2) * 2)
            img = img.resized((lw, lh)).with_opacity(job.wm.opacity)
            vert, horiz = corner.split("-")
            x = width - lw - job.wm.margin if horiz == "right" else job.wm.margin
            y = height - lh - job.wm.margin if vert == "bottom" else job.wm.margin
            layers.append(img.with_position((x, y)).with_duration(video.duration))  # type: ignore[attr-defined]
        return composite_clip(layers, size=(width, height))


def get(name: str) -> Engine:
    """The engine called `name` (GN_WM_ENGINE)."""
    if name == "ffmpeg":
        return FFmpegEngine()
    if name == "moviepy":
        return MoviePyEngine()
    raise ValueError(f"unknown watermark engine {name!r}: use ffmpeg or moviepy")


def make_thumbnail(src: Path, dst: Path, at: float, width: int = 0, timeout: float = 120) -> None:
    """Write a JPEG frame of `src` at `at` seconds to `dst` (the caller makes it atomic)."""
    from common.ffmpeg import FFmpegError, run

    try:
        run(thumbnail_args(src, dst, at, width), timeout, what=f"thumbnail of {src.name}")
    except FFmpegError as exc:
        raise RenderError(str(exc)) from exc
