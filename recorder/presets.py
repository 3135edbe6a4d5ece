"""ffmpeg command lines of the recorder, built by pure functions (tests check them without ffmpeg).

One recording = input arguments (by source kind) + stream arguments (by mode) + the segment muxer,
which writes MPEG-TS parts and prints one CSV line `name,stream_start,stream_end` on stdout each time
a part is closed. Timestamps are kept continuous (no `-reset_timestamps`): segments cut from one
continuous stream join without gaps (measured: joining segments whose timestamps were reset leaves a
~10 ms gap at every join when there is audio).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from urllib.parse import parse_qsl, urlsplit

from common import watermark
from common.ffmpeg import FFPROBE, base_args
from common.settings import SYNTHETIC_SOURCE

FONT = Path("/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf")
# The synthetic camera's default picture: `testsrc:WxH@FPS` picks another.
SYNTHETIC_SIZE = (640, 360)
SYNTHETIC_FPS = 25
# A keyframe that lands a hair before the segment boundary (timestamp rounding) still starts the new
# segment; without it that segment would run to the next keyframe (2 × seg_time).
SEGMENT_TIME_DELTA = 0.05
AUDIO_BITRATE = "64k"
# An AAC frame holds 1024 samples: 21 ms at 48 kHz but 128 ms at 8 kHz (G.711's rate). Each join between
# segments can leave up to one frame uncovered, which the clip pays for in holes and stretched video
# (measured: a 12 s window of 8 kHz AAC became 14.4 s), so audio that must be re-encoded goes to 48 kHz
# and only AAC at 44.1 kHz or more is copied as it is.
AUDIO_RATE = 48000
COPY_AAC_MIN_RATE = 44100
HW_BITRATE = "4M"
PART_PREFIX = "part_"
# v4l2 options an operator may append to a device path: /dev/video0?input_format=yuyv422&framerate=30
V4L2_OPTIONS = ("input_format", "video_size", "framerate")
# What the concat demuxer may open when it reads a camera URL from stdin (see `input_script`).
SCRIPT_PROTOCOLS = "pipe,rtsp,rtsps,rtp,srtp,tcp,udp,tls,http,https,httpproxy"


class SourceKind(StrEnum):
    """What ffmpeg reads."""

    SYNTHETIC = "synthetic"
    RTSP = "rtsp"
    V4L2 = "v4l2"
    NETWORK = "network"
    FILE = "file"


@dataclass(frozen=True)
class AudioIn:
    """The camera's audio as probed: codec name (ffprobe's) and sample rate in Hz."""

    codec: str
    rate: int

    def copyable(self) -> bool:
        """True when the recorder can keep this audio as it is (AAC with short frames)."""
        return self.codec == "aac" and self.rate >= COPY_AAC_MIN_RATE


@dataclass(frozen=True)
class Synthetic:
    """Size and frame rate of the built-in test camera."""

    width: int = SYNTHETIC_SIZE[0]
    height: int = SYNTHETIC_SIZE[1]
    fps: int = SYNTHETIC_FPS


def source_kind(source: str) -> SourceKind:
    """Classify a camera source: `testsrc[:WxH@FPS]`, `rtsp://…`, `/dev/videoN`, another URL, or a file."""
    if source == SYNTHETIC_SOURCE or source.startswith(SYNTHETIC_SOURCE + ":"):
        return SourceKind.SYNTHETIC
    if source.lower().startswith(("rtsp://", "rtsps://")):
        return SourceKind.RTSP
    if source.startswith("/dev/video"):
        return SourceKind.V4L2
    if re.match(r"^[a-zA-Z][a-zA-Z0-9+.-]*://", source):
        return SourceKind.NETWORK
    return SourceKind.FILE


def parse_synthetic(source: str) -> Synthetic:
    """`testsrc` → defaults; `testsrc:320x240@15` → that size and rate (ValueError when malformed)."""
    if source == SYNTHETIC_SOURCE:
        return Synthetic()
    m = re.fullmatch(re.escape(SYNTHETIC_SOURCE) + r":(\d{2,4})x(\d{2,4})(?:@(\d{1,3}))?", source)
    if not m:
        raise ValueError(f"synthetic source {source!r} must look like testsrc or testsrc:640x360@25")
    return Synthetic(int(m[1]), int(m[2]), int(m[3] or SYNTHETIC_FPS))


def effective_mode(kind: SourceKind, mode: str) -> str:
    """`copy` only where the input already is compressed video; raw/MJPEG/synthetic input must be encoded."""
    if kind in (SourceKind.SYNTHETIC, SourceKind.V4L2):
        return "encode"
    return mode


def synthetic_graph(syn: Synthetic, font: Path | None = FONT) -> str:
    """lavfi graph of the test camera: moving pattern + wall clock (drawtext) on out0, a tone on out1."""
    text = "text='%{localtime}':fontsize=" + str(max(12, syn.height // 12))
    text += ":fontcolor=white:box=1:boxcolor=black@0.6:boxborderw=6:x=(w-tw)/2:y=h-th-16"
    # Without the font file, drawtext still works through fontconfig's default font.
    font_opt = f"fontfile={font}:" if font is not None and font.is_file() else ""
    video = f"testsrc2=size={syn.width}x{syn.height}:rate={syn.fps},drawtext={font_opt}{text}"
    return f"{video}[out0];sine=frequency=440:beep_factor=4:sample_rate=48000[out1]"


def input_args(
    source: str, rtsp_transport: str = "tcp", timeout_seconds: float = 5.0, font: Path | None = FONT
) -> list[str]:
    """Arguments that open the camera (everything up to and including `-i`)."""
    kind = source_kind(source)
    timeout_us = str(int(timeout_seconds * 1_000_000))
    if kind is SourceKind.SYNTHETIC:
        # -re: a live camera, not a file read as fast as the CPU allows.
        return ["-re", "-f", "lavfi", "-i", synthetic_graph(parse_synthetic(source), font)]
    if kind is SourceKind.RTSP:
        if has_credentials(source):
            # Every local user can read a process's arguments (`ps`), not its stdin: the URL with its
            # password reaches ffmpeg in `input_script` (ffmpeg 5.1 has no option for RTSP credentials).
            return ["-f", "concat", "-safe", "0", "-protocol_whitelist", SCRIPT_PROTOCOLS, "-i", "pipe:0"]
        # ffmpeg 5.1: the RTSP socket timeout is `-timeout`, in microseconds.
        return ["-rtsp_transport", rtsp_transport, "-timeout", timeout_us, "-i", source]
    if kind is SourceKind.V4L2:
        device, _, query = source.partition("?")
        opts = {"input_format": "mjpeg"}
        opts.update({k: v for k, v in parse_qsl(query) if k in V4L2_OPTIONS})
        args = ["-f", "v4l2", "-thread_queue_size", "512"]
        for key, value in opts.items():
            args += [f"-{key}", value]
        return [*args, "-i", device]
    if kind is SourceKind.NETWORK:
        # udp has its own `timeout`; other protocols honour the generic read/write timeout.
        extra = [] if source.lower().startswith("udp://") else ["-rw_timeout", timeout_us]
        return [*extra, "-i", source]
    # A file plays as a camera: at its own speed, looped, timestamps kept continuous by ffmpeg.
    return ["-re", "-stream_loop", "-1", "-i", source]


def has_credentials(source: str) -> bool:
    """True when an RTSP URL carries a user name or password."""
    try:
        url = urlsplit(source)
        return url.username is not None or url.password is not None
    except ValueError:
        return False


def input_script(source: str, rtsp_transport: str = "tcp", timeout_seconds: float = 5.0) -> bytes | None:
    """What ffmpeg reads on stdin for a camera URL with credentials (None: it reads nothing).

    A one-entry ffconcat script: the URL and the RTSP options `input_args` gives other cameras.
    """
    if source_kind(source) is not SourceKind.RTSP or not has_credentials(source):
        return None
    quoted = source.replace("'", "'\\''")
    lines = [
        "ffconcat version 1.0",
        f"file '{quoted}'",
        f"option rtsp_transport {rtsp_transport}",
        f"option timeout {int(timeout_seconds * 1_000_000)}",
    ]
    return ("\n".join(lines) + "\n").encode()


def map_args(kind: SourceKind, wm_graph: str | None = None) -> list[str]:
    """Which streams to record: the first video (watermarked when a graph is given) and the first audio."""
    video, audio = ("0:v", "0:a") if kind is SourceKind.SYNTHETIC else ("0:v:0", "0:a:0?")
    if wm_graph:
        return ["-filter_complex", wm_graph, "-map", f"[{watermark.OUT}]", "-map", audio]
    return ["-map", video, "-map", audio]


def watermark_graph(source: str, wm: watermark.Watermark) -> str:
    """The filtergraph burning the logo in while recording (GN_WM_AT=record, encode mode only)."""
    kind = source_kind(source)
    width = height = None
    if kind is SourceKind.SYNTHETIC:
        syn = parse_synthetic(source)
        width, height = syn.width, syn.height
    # Other sources: the width is unknown until frames flow, so the graph sizes the logo with scale2ref.
    pad = "0:v" if kind is SourceKind.SYNTHETIC else "0:v:0"
    return watermark.filtergraph(wm, width, height, video=pad, first_logo_input=1)


def force_keyframes(seg_time: float) -> str:
    """A keyframe at every segment boundary, so encode-mode segments are exactly seg_time long."""
    return f"expr:gte(t,n_forced*{seg_time:g})"


def video_args(mode: str, encoder: str, seg_time: float) -> list[str]:
    """Video codec arguments: stream copy, libx264 ultrafast/zerolatency, or the Pi's h264_v4l2m2m."""
    if mode == "copy":
        return ["-c:v", "copy"]
    if encoder == "h264_v4l2m2m":
        args = ["-c:v", "h264_v4l2m2m", "-b:v", HW_BITRATE]
    else:
        args = ["-c:v", "libx264", "-preset", "ultrafast", "-tune", "zerolatency"]
    return [*args, "-pix_fmt", "yuv420p", "-force_key_frames", force_keyframes(seg_time)]


def audio_args(audio: AudioIn | None = None) -> list[str]:
    """Copy the camera's AAC; anything else (G.711, low-rate AAC, unknown) becomes 48 kHz AAC.

    MPEG-TS cannot carry G.711, and copying costs nothing: re-encoding was two thirds of the recorder's
    CPU in copy mode.
    """
    if audio is not None and audio.copyable():
        return ["-c:a", "copy"]
    rate = str(AUDIO_RATE)
    return ["-af", f"aresample={rate}", "-c:a", "aac", "-ar", rate, "-b:a", AUDIO_BITRATE]


def part_pattern(directory: Path, run_id: str) -> Path:
    """Where ffmpeg writes a run's open parts; the recorder renames each once it is closed."""
    return directory / f"{PART_PREFIX}{run_id}_%06d.ts"


def segment_args(seg_time: float, pattern: Path) -> list[str]:
    """The segment muxer: MPEG-TS parts of seg_time (cut on keyframes), CSV list of closed parts on stdout."""
    return [
        "-f",
        "segment",
        "-segment_format",
        "mpegts",
        "-segment_time",
        f"{seg_time:g}",
        "-segment_time_delta",
        f"{SEGMENT_TIME_DELTA:g}",
        "-segment_list",
        "pipe:1",
        "-segment_list_type",
        "csv",
        "-segment_list_flags",
        "+live",
        str(pattern),
    ]


def record_args(
    source: str,
    mode: str,
    encoder: str,
    seg_time: float,
    pattern: Path,
    rtsp_transport: str = "tcp",
    timeout_seconds: float = 5.0,
    wm: watermark.Watermark | None = None,
    font: Path | None = FONT,
    audio: AudioIn | None = None,
) -> list[str]:
    """The whole recording command line for one camera (`wm`: burn that logo in; encode mode only).

    `audio` is the camera's probed audio (None: unknown, so it is re-encoded, which is always safe).
    """
    kind = source_kind(source)
    mode = effective_mode(kind, mode)
    graph = watermark_graph(source, wm) if wm is not None and mode == "encode" else None
    logos = watermark.input_args(wm) if graph and wm is not None else []
    return [
        *base_args("error"),
        "-nostats",
        *input_args(source, rtsp_transport, timeout_seconds, font),
        *logos,
        *map_args(kind, graph),
        *video_args(mode, encoder, seg_time),
        *audio_args(audio),
        *segment_args(seg_time, pattern),
    ]


def keyframe_probe_args(path: Path) -> list[str]:
    """ffprobe listing a file's video packets as `pts_time,flags` lines (keyframes have a K flag).

    Packets, not decoded frames: cheaper, and an IDR sent in several slices shows up as several key
    packets at the same instant, which keyframes.py counts as one.
    """
    return [
        FFPROBE,
        "-v",
        "error",
        "-select_streams",
        "v:0",
        "-show_entries",
        "packet=pts_time,flags",
        "-of",
        "csv=p=0",
        str(path),
    ]


def source_probe_args(
    source: str, rtsp_transport: str = "tcp", timeout_seconds: float = 5.0, read_seconds: float = 0.0
) -> list[str]:
    """ffprobe describing a camera's streams as JSON; with `read_seconds`, also its packets for that long.

    The stream description alone needs no analysis time (an RTSP camera states its codecs when asked);
    the packets give the keyframe interval.
    """
    kind = source_kind(source)
    timeout_us = str(int(timeout_seconds * 1_000_000))
    args = [FFPROBE, "-v", "error"]
    opening = ["-i", source]
    if kind is SourceKind.RTSP and has_credentials(source):
        # The URL (and its password) on stdin, as for the recorder's ffmpeg: see `input_script`.
        opening = ["-f", "concat", "-safe", "0", "-protocol_whitelist", SCRIPT_PROTOCOLS, "-i", "pipe:0"]
    elif kind is SourceKind.RTSP:
        args += ["-rtsp_transport", rtsp_transport, "-timeout", timeout_us]
    elif kind is SourceKind.NETWORK and not source.lower().startswith("udp://"):
        args += ["-rw_timeout", timeout_us]
    entries = "stream=index,codec_type,codec_name,width,height,avg_frame_rate,r_frame_rate,sample_rate"
    if read_seconds > 0:
        args += ["-read_intervals", f"%+{read_seconds:g}"]
        entries += ":packet=stream_index,pts_time,flags"
    else:
        args += ["-analyzeduration", "0"]
    return [*args, "-show_entries", entries, "-of", "json", *opening]
