"""What a camera sends (codecs, size, rate, keyframe interval), asked with one ffprobe connection.

The recorder asks before each ffmpeg start, to copy AAC audio and re-encode only what MPEG-TS cannot
carry or would join badly; `gravanois camera probe` asks with packets read for a few seconds, to
measure the keyframe interval too.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from typing import Any

from common.ffmpeg import FFmpegError, run, stream_fps
from common.log import event, fields, get_logger
from recorder import keyframes, presets
from recorder.presets import AudioIn, SourceKind

log = get_logger(__name__)

# Sources asked before recording. Not the synthetic camera and V4L2 webcams (raw audio or none, encoded
# anyway), nor other network streams: a tcp:// or udp:// stream may serve one client only, which the
# question would use up (their audio is re-encoded, which always works).
PROBED_KINDS = (SourceKind.RTSP, SourceKind.FILE)
# ffprobe's own time beyond the connection timeout and the packets it reads.
PROBE_MARGIN = 10.0
# G.711 and friends as ffprobe names them, for people.
AUDIO_NAMES = {"pcm_alaw": "G.711 A-law", "pcm_mulaw": "G.711 µ-law", "aac": "AAC", "adpcm_g726": "G.726"}
VIDEO_NAMES = {"h264": "H.264", "hevc": "H.265"}

_last_plan: dict[str, str] = {}


@dataclass(frozen=True)
class SourceInfo:
    """A camera's streams: video codec/size/fps, audio codec/rate (None: no audio), keyframe interval."""

    video_codec: str | None
    width: int
    height: int
    fps: float
    audio: AudioIn | None
    keyframe_interval: float | None = None


def parse(data: dict[str, Any]) -> SourceInfo:
    """ffprobe's JSON (streams, and packets when read) → SourceInfo."""
    streams = data.get("streams") or []
    video = next((s for s in streams if s.get("codec_type") == "video"), None)
    sound = next((s for s in streams if s.get("codec_type") == "audio"), None)
    audio = None
    if sound is not None:
        audio = AudioIn(str(sound.get("codec_name", "unknown")), int(sound.get("sample_rate") or 0))
    interval = None
    if video is not None and data.get("packets"):
        vindex = video.get("index", 0)
        lines = [
            f"{p.get('pts_time', '')},{p.get('flags', '')}"
            for p in data["packets"]
            if p.get("stream_index") == vindex
        ]
        interval = keyframes.interval_from(keyframes.key_packet_times(lines), [])
    return SourceInfo(
        video_codec=str(video.get("codec_name", "unknown")) if video is not None else None,
        width=int(video.get("width") or 0) if video is not None else 0,
        height=int(video.get("height") or 0) if video is not None else 0,
        fps=stream_fps(video) if video is not None else 0.0,
        audio=audio,
        keyframe_interval=interval,
    )


def probe_source(
    source: str, rtsp_transport: str = "tcp", timeout_seconds: float = 5.0, read_seconds: float = 0.0
) -> SourceInfo:
    """Connect once and describe the camera; with `read_seconds`, measure its keyframe interval too.

    Raises FFmpegError when the camera cannot be reached or read.
    """
    args = presets.source_probe_args(source, rtsp_transport, timeout_seconds, read_seconds)
    timeout = 2 * timeout_seconds + read_seconds + PROBE_MARGIN
    script = presets.input_script(source, rtsp_transport, timeout_seconds)
    out = run(args, timeout, what="ffprobe camera", stdin=script).stdout
    try:
        return parse(json.loads(out or b"{}"))
    except (ValueError, TypeError) as exc:
        raise FFmpegError(f"ffprobe camera gave unreadable output: {exc}") from None


def audio_label(audio: AudioIn) -> str:
    """`G.711 A-law 8000 Hz`, `AAC 48000 Hz` …"""
    return f"{AUDIO_NAMES.get(audio.codec, audio.codec)} {audio.rate} Hz"


def plan_text(audio: AudioIn | None) -> str:
    """What the recorder does with this audio, in words."""
    if audio is None:
        return "no audio"
    if audio.copyable():
        return f"{audio_label(audio)} audio, copied"
    why = (
        "MPEG-TS cannot carry it"
        if audio.codec != "aac"
        else "its long frames would leave holes at every join"
    )
    return f"{audio_label(audio)} audio, re-encoded to AAC {presets.AUDIO_RATE} Hz ({why})"


def camera_audio(camera: str, source: str, rtsp_transport: str, timeout_seconds: float) -> AudioIn | None:
    """The camera's audio for the recording command (None: not known, so it is safely re-encoded).

    Logs what happens to the audio whenever that changes (first start, a camera reconfigured).
    """
    if presets.source_kind(source) not in PROBED_KINDS:
        return None
    try:
        info = probe_source(source, rtsp_transport, timeout_seconds)
    except FFmpegError as exc:
        # ffmpeg will meet the same fault and the watchdog reports it; re-encoding is always safe.
        log.debug("camera probe failed: %s", exc, extra=fields(camera=camera))
        return None
    plan = plan_text(info.audio)
    if _last_plan.get(camera) != plan:
        _last_plan[camera] = plan
        copied = info.audio is not None and info.audio.copyable()
        event(
            log,
            "audio_plan",
            logging.INFO,
            msg=f"camera {camera} sends {plan}",
            camera=camera,
            audio_codec=info.audio.codec if info.audio else None,
            audio_rate=info.audio.rate if info.audio else None,
            audio_copied=copied,
        )
    return info.audio
