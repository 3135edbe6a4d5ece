"""Render stage with real ffmpeg, real Redis and real `gravanois worker` processes."""

from __future__ import annotations

import dataclasses
import json
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

import pytest
import redis

from common import keys, sidecar
from common.ffmpeg import probe
from common.fsutil import sha256_file
from common.pipeline import enqueue, job_id, queue_name
from common.settings import Settings
from harness.media import make_logo
from tests.helpers import RENDER_FIELDS, SEED_FIELDS, fetch, run_gravanois
from tests.render_helpers import frame, region_diff, stage_clip
from worker import engines, files, render
from worker.render import Render


def _job_id(settings: Settings, side: Path) -> str:
    return job_id(settings.device_id, sidecar.load(side)["press_id"], "render")


def test_render_job_watermarks_thumbnails_and_moves_the_sidecar(
    make_settings: Callable[..., Settings], redis_conn: redis.Redis, tmp_path: Path
) -> None:
    logo = make_logo(tmp_path / "logo.png", size="200x80", color="red")
    settings = make_settings(wm_logo=logo, thumb_width=160)
    side = stage_clip(settings, seconds=3)
    data = sidecar.load(side)
    raw = settings.clips_dir / data["file_name"]
    raw_copy = tmp_path / "raw.mp4"
    raw_copy.write_bytes(raw.read_bytes())
    stem = raw.stem
    # A crashed earlier attempt left a half-written output: it must be cleaned, not shipped.
    settings.output_dir.mkdir(parents=True, exist_ok=True)
    leftover = settings.output_dir / f".tmp-999999-{stem}.mp4"
    leftover.write_bytes(b"half a file")
    job = enqueue(settings, redis_conn, "render", side.name, press_id=data["press_id"], at=time.time())[0]

    done = run_gravanois(settings, "worker", "--burst", "--queues", "render", timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]

    job = fetch(redis_conn, job.id)
    assert job.get_status() == "finished", done.stderr[-2000:]
    wm = settings.output_dir / f"{stem}.mp4"
    assert job.return_value() == str(wm)
    assert job.meta["progress"] == 100.0
    assert not leftover.exists() and not raw.exists() and not side.exists()
    assert sorted(p.name for p in settings.output_dir.iterdir()) == sorted(
        [f"{stem}.mp4", f"{stem}.jpg", f"{stem}.json"]
    )
    # Pixels: the logo corner changed (red blended in), the rest matches the raw clip.
    info = probe(wm)
    assert (info.width, info.height, info.codec) == (320, 240, "h264")
    a, b = frame(raw_copy, 1.5, 320, 240), frame(wm, 1.5, 320, 240)
    # 0.2 × 320 = 64 px wide logo, 26 px high, 24 px from the bottom-right corner: x 232..296, y 190..216.
    assert region_diff(a, b, 320, 236, 194, 292, 212) > 40
    assert region_diff(a, b, 320, 0, 0, 320, 180) < 4
    assert region_diff(a, b, 320, 0, 180, 220, 240) < 4
    # Thumbnail: a JPEG of the configured width, aspect kept.
    thumb = settings.output_dir / f"{stem}.jpg"
    assert thumb.read_bytes()[:3] == b"\xff\xd8\xff"
    t = probe(thumb)
    assert (t.width, t.height) == (160, 120)
    # The sidecar: seed fields, render fields, valid JSON next to the output.
    new = json.loads((settings.output_dir / f"{stem}.json").read_text())
    for f in (*SEED_FIELDS, *RENDER_FIELDS, "camera", "press_at"):
        assert f in new, f
    assert new["status"] == "watermarked"
    assert new["wm_path"] == str(wm) and new["thumbnail_path"] == str(thumb)
    assert set(new["meta_wm"]) == set(sidecar.META_FIELDS) and new["meta_wm"]["width"] == 320
    assert abs(new["meta_wm"]["duration_sec"] - 3) < 0.3
    assert new["wm_sha256"] == sha256_file(wm) and new["sha256"] == data["sha256"]
    assert new["updated_at"].endswith("Z")
    counters = redis_conn.hgetall(keys.counters(settings.device_id))
    assert counters[b"renders_ok"] == b"1" and b"renders_failed" not in counters
    note = redis_conn.hgetall(keys.highlight(settings.device_id, data["press_id"]))
    assert note[b"state"] == b"done"

    # Idempotent: running the same job again only fixes up; nothing is re-encoded or counted twice.
    before = wm.stat().st_mtime_ns
    assert Render(settings, redis_conn, files.from_job_arg(settings, side.name), None).run() == str(wm)
    assert wm.stat().st_mtime_ns == before
    assert redis_conn.hget(keys.counters(settings.device_id), "renders_ok") == b"1"


def test_rerun_after_crash_between_outputs_and_cleanup(
    make_settings: Callable[..., Settings], redis_conn: redis.Redis, tmp_path: Path
) -> None:
    """Outputs finished, but the raw clip and old sidecar were still there: a re-run only removes them."""
    settings = make_settings(wm_logo=make_logo(tmp_path / "logo.png"))
    side = stage_clip(settings, seconds=2)
    raw_name = sidecar.load(side)["file_name"]
    keep = tmp_path / "keep"
    keep.mkdir()
    for f in (side, settings.clips_dir / raw_name):
        (keep / f.name).write_bytes(f.read_bytes())
    Render(settings, redis_conn, files.from_job_arg(settings, side.name), None).run()
    for f in keep.iterdir():  # the crash: as if the removal had not happened
        (settings.clips_dir / f.name).write_bytes(f.read_bytes())
    wm = settings.output_dir / raw_name
    before = wm.stat().st_mtime_ns
    Render(settings, redis_conn, files.from_job_arg(settings, side.name), None).run()
    assert wm.stat().st_mtime_ns == before
    assert not list(settings.clips_dir.iterdir())
    assert sidecar.load(settings.output_dir / side.name)["status"] == "watermarked"


def test_hardware_encoder_falls_back_to_libx264(
    make_settings: Callable[..., Settings], redis_conn: redis.Redis, tmp_path: Path
) -> None:
    settings = make_settings(wm_logo=make_logo(tmp_path / "logo.png"), wm_encoder="h264_v4l2m2m")
    side = stage_clip(settings, seconds=2)
    stem = side.stem
    # There is no V4L2 M2M encoder here: the hardware command itself really fails …
    spec = engines.RenderJob(
        src=settings.clips_dir / f"{stem}.mp4",
        dst=tmp_path / "hw.mp4",
        wm=render.Watermark.from_settings(settings),
        width=320,
        height=240,
        duration=2,
        encoder="h264_v4l2m2m",
    )
    hw = subprocess.run(engines.ffmpeg_args(spec), capture_output=True)
    assert hw.returncode != 0
    # … and the render still succeeds, with libx264.
    out = Render(settings, redis_conn, files.from_job_arg(settings, side.name), None).run()
    assert probe(Path(out)).codec == "h264"
    assert sidecar.load(settings.output_dir / f"{stem}.json")["status"] == "watermarked"


def test_watermark_at_record_skips_the_reencode(
    make_settings: Callable[..., Settings], redis_conn: redis.Redis, tmp_path: Path
) -> None:
    settings = make_settings(wm_at="record", wm_logo=tmp_path / "absent.png")
    render.check_config(settings)  # the recorder owns the logo in this mode
    side = stage_clip(settings, seconds=2)
    raw = settings.clips_dir / sidecar.load(side)["file_name"]
    digest = sha256_file(raw)
    out = Path(Render(settings, redis_conn, files.from_job_arg(settings, side.name), None).run())
    assert sha256_file(out) == digest  # the clip itself is final, byte for byte
    new = sidecar.load(settings.output_dir / side.name)
    assert new["status"] == "watermarked" and new["wm_engine"] == "record"
    assert Path(new["thumbnail_path"]).read_bytes()[:2] == b"\xff\xd8"


def test_vertical_crop_is_a_second_output(
    make_settings: Callable[..., Settings], redis_conn: redis.Redis, tmp_path: Path
) -> None:
    settings = make_settings(wm_logo=make_logo(tmp_path / "logo.png"), wm_vertical=True)
    side = stage_clip(settings, seconds=2, size="640x360")
    Render(settings, redis_conn, files.from_job_arg(settings, side.name), None).run()
    new = sidecar.load(settings.output_dir / side.name)
    v = probe(Path(new["wm_vertical_path"]))
    assert (v.width, v.height) == (202, 360)


def test_upload_job_is_enqueued_once_when_uploads_are_on(
    make_settings: Callable[..., Settings], redis_conn: redis.Redis, tmp_path: Path
) -> None:
    settings = make_settings(
        wm_logo=make_logo(tmp_path / "logo.png"),
        api_base="http://127.0.0.1:9",
        client_id="c",
        venue_id="v",
        device_secret="s",
    )
    side = stage_clip(settings, seconds=2)
    press_id = sidecar.load(side)["press_id"]
    Render(settings, redis_conn, files.from_job_arg(settings, side.name), None).run()
    job = fetch(redis_conn, job_id(settings.device_id, press_id, "upload"))
    assert job.func_name == "worker.upload.upload_highlight"
    assert job.args == [side.name]
    assert job.origin == queue_name(settings.device_id, "upload")
    Render(
        settings, redis_conn, files.from_job_arg(settings, side.name), None
    ).run()  # a re-run does not enqueue a second upload
    assert redis_conn.llen(f"rq:queue:{job.origin}") == 1


@pytest.mark.parametrize("problem", ["missing", "empty", "garbage"])
def test_missing_logo_stops_the_worker_with_one_line(
    make_settings: Callable[..., Settings], tmp_path: Path, problem: str
) -> None:
    logo = tmp_path / "logo.png"
    if problem == "empty":
        logo.write_bytes(b"")
    elif problem == "garbage":
        logo.write_text("this is not a picture\n")
    settings = make_settings(wm_logo=logo)
    done = run_gravanois(settings, "worker", "--burst", "--queues", "render", timeout=60)
    assert done.returncode == 2
    lines = [ln for ln in done.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: GN_WM_LOGO="), done.stderr
    assert "Traceback" not in done.stderr


def test_a_worker_started_with_data_dir_writes_there(
    make_settings: Callable[..., Settings], redis_conn: redis.Redis, tmp_path: Path
) -> None:
    """Jobs take their settings from the worker that runs them: its flag beats the environment."""
    flagged = make_settings(data_dir=tmp_path / "flagged", wm_logo=make_logo(tmp_path / "logo.png"))
    side = stage_clip(flagged, seconds=2)
    data = sidecar.load(side)
    enqueue(flagged, redis_conn, "render", side.name, press_id=data["press_id"], at=time.time())
    elsewhere = dataclasses.replace(flagged, data_dir=tmp_path / "from-env")  # what GN_DATA_DIR says
    done = run_gravanois(
        elsewhere, "--data-dir", str(flagged.data_dir), "worker", "--queues", "render", "--burst",
        timeout=120,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
    assert (flagged.output_dir / side.name).is_file() and (flagged.output_dir / data["file_name"]).is_file()
    assert not (tmp_path / "from-env").exists()
