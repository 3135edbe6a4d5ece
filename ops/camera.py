"""`gravanois camera probe URL`: what a camera sends, and what that means for the box, in one table.

Connects once (ffprobe, reading the stream for a few seconds to measure the keyframe interval) and
prints the video codec, size, frame rate, GOP, audio codec and rate beside what the recorder will do
with each and what to change in the camera's menu. An unreachable camera is one line and exit code 1.
"""

from __future__ import annotations

import contextlib

import click

from common.cli import fail, settings_from
from common.ffmpeg import FFmpegError, MissingToolError, require_tools
from common.log import redact
from common.settings import Settings, SettingsError
from recorder import keyframes, presets
from recorder.probe import AUDIO_NAMES, VIDEO_NAMES, SourceInfo, probe_source

# Video a stream copy can keep (the render turns H.265 into H.264 for phones).
COPYABLE_VIDEO = ("h264", "hevc")
DEFAULT_READ_SECONDS = 10.0


@click.group()
def camera() -> None:
    """Operator tools for cameras: `gravanois camera probe URL` before configuring one."""


@camera.command()
@click.argument("url")
@click.option(
    "--seconds",
    type=click.FloatRange(2, 60),
    default=DEFAULT_READ_SECONDS,
    show_default=True,
    help="How long to read the stream (must see two keyframes to measure the GOP).",
)
@click.option("--transport", type=click.Choice(["tcp", "udp"]), help="Override GN_RTSP_TRANSPORT.")
@click.pass_context
def probe(ctx: click.Context, url: str, seconds: float, transport: str | None) -> None:
    """Connect to a camera once and say what it sends and how the box will record it.

    URL is an rtsp://… address (or any source the recorder takes), or a camera id from GN_CAMERAS.
    """
    settings = settings_from(ctx, process="camera-probe")
    source = url
    # Not a configured id: the argument is the address itself.
    with contextlib.suppress(SettingsError):
        source = settings.camera(url).source
    try:
        require_tools()
    except MissingToolError as exc:
        fail(str(exc))
    transport = transport or settings.rtsp_transport
    try:
        info = probe_source(source, transport, settings.rtsp_timeout_seconds, read_seconds=seconds)
    except FFmpegError as exc:
        # ffprobe's last error line, without the address it repeats: "Connection refused".
        reason = str(exc).split(" | ")[-1].rsplit(": ", 1)[-1]
        fail(
            f"cannot read the camera at {redact(source)} ({reason}): check its address, port, user and "
            "password, and that it is on this network",
            code=1,
        )
    if info.video_codec is None:
        fail(f"the camera at {redact(source)} sends no video: check the stream path in its URL", code=1)
    click.echo(f"camera {redact(source)} (read {seconds:g} s)")
    click.echo(table(report(info, settings, seconds)))


def report(info: SourceInfo, settings: Settings, seconds: float) -> list[tuple[str, str, str]]:
    """Rows (what, the camera sends, what it means for the box) of the probe table."""
    seg = settings.seg_time
    rows = []
    codec = info.video_codec or "none"
    video = f"{VIDEO_NAMES.get(codec, codec)} {info.width}x{info.height} {info.fps:g} fps"
    if codec in COPYABLE_VIDEO:
        note = "copy mode: recorded as sent, near-zero CPU"
        if codec != "h264":
            note += "; highlights are re-encoded to H.264 for phones"
    else:
        note = f"{codec} cannot be copied: set Video Encoding to H.264 (or H.265), else record in encode mode"
    rows.append(("video", video, note))

    gop = info.keyframe_interval
    frames = f" ({round(gop * info.fps)} frames)" if gop and info.fps else ""
    target = f"I-frame interval (GOP) = {round(info.fps * seg) if info.fps else 'frame rate ×'} "
    if gop is None:
        rows.append(
            (
                "keyframes",
                f"fewer than 2 in {seconds:g} s",
                f"GOP longer than {seconds / 2:g} s: clips start that much early; set {target}",
            )
        )
    elif keyframes.too_long(gop, seg):
        rows.append(
            (
                "keyframes",
                f"every {gop:g} s{frames}",
                f"clips may start up to {gop:g} s before t-pre (end exact); set {target.rstrip()}"
                f" for {seg:g} s, Smart Codec / H.264+ off",
            )
        )
    else:
        rows.append(("keyframes", f"every {gop:g} s{frames}", f"clips start within {gop:g} s of t-pre: good"))

    audio = info.audio
    if audio is None:
        rows.append(("audio", "none", "highlights are silent (turn Audio on in the camera to keep sound)"))
    elif audio.copyable():
        rows.append(("audio", label(audio.codec, audio.rate), "copied as sent, no CPU: good"))
    else:
        why = "MPEG-TS cannot carry it" if audio.codec != "aac" else "its frames are too long to join"
        rows.append(
            (
                "audio",
                label(audio.codec, audio.rate),
                f"re-encoded to AAC {presets.AUDIO_RATE // 1000} kHz ({why}; costs CPU): "
                "set Audio Encoding to AAC, 48 kHz",
            )
        )
    return rows


def label(codec: str, rate: int) -> str:
    """`G.711 A-law 8 kHz`."""
    khz = f"{rate / 1000:g} kHz" if rate else "? kHz"
    return f"{AUDIO_NAMES.get(codec, codec)} {khz}"


def table(rows: list[tuple[str, str, str]]) -> str:
    """Left-aligned columns with a header."""
    head = ("", "camera sends", "for the box")
    w0 = max(len(r[0]) for r in [head, *rows])
    w1 = max(len(r[1]) for r in [head, *rows])
    return "\n".join(f"{a:<{w0}}  {b:<{w1}}  {c}".rstrip() for a, b, c in [head, *rows])
