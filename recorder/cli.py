"""`gravanois recorder --camera ID`: record one camera into rolling segments until stopped."""

from __future__ import annotations

import dataclasses
import logging
import sys

import click

from common.cli import fail, settings_from
from common.ffmpeg import MissingToolError, require_tools
from common.log import event, get_logger
from common.redisconn import connect
from common.settings import RECORD_MODES, Camera, Settings, SettingsError, camera_mode
from common.watermark import Watermark
from recorder import presets
from recorder.loop import Recorder, check_writable

log = get_logger(__name__)


@click.command()
@click.option("--camera", "camera_id", required=True, help="Camera id from GN_CAMERAS.")
@click.option(
    "--source",
    help="Override the camera's source for this run: rtsp://…, /dev/videoN, a URL or file, or testsrc.",
)
@click.option(
    "--mode",
    type=click.Choice(RECORD_MODES),
    help="Override the record mode: copy (stream copy) or encode (libx264 / h264_v4l2m2m).",
)
@click.pass_context
def recorder(ctx: click.Context, camera_id: str, source: str | None, mode: str | None) -> None:
    """Record one camera all the time: segments on disk, their wall-clock times in Redis.

    Keeps GN_BUFFER_SECONDS of segments, never the ones a pending highlight pinned, except as a last
    resort: below GN_BUFFER_MIN_FREE_MB free the oldest segments go, pinned ones too if that is not
    enough (an alarm says so). Restarts a stalled or dead ffmpeg (a network camera as soon as it answers
    again), and publishes its health for `gravanois status`. Stop with SIGTERM or Ctrl-C: the last
    segment is closed and indexed first.
    """
    settings = settings_from(ctx, process=f"recorder-{camera_id}")
    try:
        camera = settings.camera(camera_id)
    except SettingsError as exc:
        fail(str(exc))
    camera = dataclasses.replace(camera, source=source or camera.source, mode=mode or camera.mode)
    if presets.source_kind(camera.source) is presets.SourceKind.SYNTHETIC:
        try:
            presets.parse_synthetic(camera.source)
        except ValueError as exc:
            fail(str(exc))
    problem = check_writable(settings.camera_buffer_dir(camera.id))
    if problem:
        fail(
            f"GN_BUFFER_DIR={settings.buffer_dir} is not writable ({problem}): "
            "point it at a folder this user can write, e.g. /dev/shm/gravanois"
        )
    try:
        require_tools()
    except MissingToolError as exc:
        fail(str(exc))
    sys.exit(Recorder(settings, camera, connect(settings), wm=record_watermark(settings, camera)).run())


def record_watermark(settings: Settings, camera: Camera) -> Watermark | None:
    """The logo to burn in while recording (GN_WM_AT=record), if this camera is encoded."""
    if settings.wm_at != "record":
        return None
    mode = presets.effective_mode(presets.source_kind(camera.source), camera_mode(settings, camera))
    if mode != "encode":
        # Recording matters more than the logo: keep recording, say clearly why there is no logo.
        event(
            log,
            "watermark_skipped",
            logging.WARNING,
            msg=f"GN_WM_AT=record needs encode mode, but camera {camera.id} records in copy mode: its "
            "segments carry no logo; set the camera's mode to encode or GN_WM_AT=render",
            camera=camera.id,
        )
        return None
    wm = Watermark.from_settings(settings)
    for logo in wm.logos:
        if not logo.is_file():
            fail(f"GN_WM_LOGO file {logo} does not exist: point GN_WM_LOGO (or GN_WM_LOGO2) at a PNG logo")
    return wm
