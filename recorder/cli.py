"""`gravanois recorder --camera ID`: record one camera into rolling segments until stopped."""

from __future__ import annotations

import dataclasses
import sys

import click

from common.cli import fail, settings_from
from common.ffmpeg import MissingToolError, require_tools
from common.redisconn import connect
from common.settings import RECORD_MODES, SettingsError
from recorder import presets
from recorder.loop import Recorder, check_writable


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

    Keeps GN_BUFFER_SECONDS of segments (never the ones a pending highlight pinned), restarts a stalled
    or dead ffmpeg with backoff, and publishes its health for `gravanois status`. Stop with SIGTERM or
    Ctrl-C: the last segment is closed and indexed first.
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
    sys.exit(Recorder(settings, camera, connect(settings)).run())
