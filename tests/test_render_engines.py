"""Engines and retention: ffmpeg argument lists (pure), MoviePy parity (PSNR), bounded outputs."""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from common.settings import Settings
from common.watermark import Watermark
from harness.media import make_logo, make_video
from tests.render_helpers import psnr
from worker import engines, retention

LOGO = Path("/x/logo.png")


def _job(**kw: object) -> engines.RenderJob:
    base: dict[str, object] = dict(
        src=Path("/in/a.mp4"),
        dst=Path("/out/.tmp-1-a.mp4"),
        wm=Watermark(LOGO),
        width=1280,
        height=720,
        duration=50.0,
    )
    base.update(kw)
    return engines.RenderJob(**base)  # type: ignore[arg-type]


def test_ffmpeg_args_one_run_overlay_audio_copy_faststart() -> None:
    args = engines.ffmpeg_args(_job(crf=23, preset="veryfast"))
    assert args[:2] == ["ffmpeg", "-hide_banner"]
    assert args[args.index("-progress") + 1] == "pipe:1"
    assert args.count("-i") == 2 and str(LOGO) in args
    fc = args[args.index("-filter_complex") + 1]
    assert "scale=256:-2" in fc and "colorchannelmixer=aa=0.6" in fc
    assert args[-7:] == ["-c:a", "copy", "-movflags", "+faststart", "-f", "mp4", "/out/.tmp-1-a.mp4"]
    assert args[args.index("-c:v") : args.index("-c:v") + 6] == [
        "-c:v",
        "libx264",
        "-preset",
        "veryfast",
        "-crf",
        "23",
    ]
    assert args[args.index("-map") : args.index("-map") + 4] == ["-map", "[wm]", "-map", "0:a?"]


def test_ffmpeg_args_plain_reencode_vertical_and_hardware() -> None:
    plain = engines.ffmpeg_args(_job(overlay=False))
    assert "-filter_complex" not in plain and plain.count("-i") == 1 and "0:v:0" in plain
    vert = engines.ffmpeg_args(_job(vertical_dst=Path("/out/v.mp4")))
    assert vert.count("-movflags") == 2 and "[wmv]" in vert and vert[-1] == "/out/v.mp4"
    hw = engines.ffmpeg_args(_job(encoder="h264_v4l2m2m", fps=30))
    assert hw[hw.index("-c:v") + 1] == "h264_v4l2m2m" and "-crf" not in hw
    assert hw[hw.index("-b:v") + 1] == "2764k"
    assert engines.ffmpeg_args(_job(encoder="h264_v4l2m2m"), "libx264")[hw.index("-c:v") + 1] == "libx264"


def test_parse_progress() -> None:
    assert engines.parse_progress("out_time_us=25000000\n", 50) == 50.0
    assert engines.parse_progress("out_time_ms=60000000", 50) == 100.0
    assert engines.parse_progress("out_time_us=N/A", 50) is None
    assert engines.parse_progress("progress=end", 50) == 100.0
    assert engines.parse_progress("frame=12", 50) is None


def test_thumbnail_args() -> None:
    args = engines.thumbnail_args(Path("/a.mp4"), Path("/t.jpg"), 25.0, 480)
    assert args[args.index("-ss") + 1] == "25.000" and args.index("-ss") < args.index("-i")
    assert "scale=480:-2" in args and args[-1] == "/t.jpg"
    assert "-vf" not in engines.thumbnail_args(Path("/a.mp4"), Path("/t.jpg"), 1.0)


def test_moviepy_engine_matches_ffmpeg_engine(tmp_path: Path) -> None:
    try:
        import moviepy  # noqa: F401
    except ImportError as exc:
        pytest.skip(f"the moviepy extra is not installed ({exc})")
    src = make_video(tmp_path / "in.mp4", seconds=2, size="320x240", fps=15)
    wm = Watermark(make_logo(tmp_path / "logo.png", size="200x80"), opacity=0.6, margin=12)
    outs = {}
    for name in ("ffmpeg", "moviepy"):
        outs[name] = tmp_path / f"{name}.mp4"
        job = _job(src=src, dst=outs[name], wm=wm, width=320, height=240, duration=2.0, fps=15, crf=18)
        engines.get(name).render(job)
    assert psnr(outs["ffmpeg"], outs["moviepy"]) >= 35


def _highlight(d: Path, stem: str, age_days: float, now: float) -> None:
    for suffix in (".mp4", ".jpg", ".json"):
        f = d / f"{stem}{suffix}"
        f.write_bytes(b"x" * 10)
        os.utime(f, (now - age_days * 86400, now - age_days * 86400))


def test_retention_plan_is_pure_count_and_age() -> None:
    hs = [retention.StoredHighlight(f"h{i}", [], 1000.0 + i) for i in range(5)]
    now = 1000.0 + 86400 * 2
    assert [h.stem for h in retention.plan(hs, 3, 30, now)] == ["h0", "h1"]
    assert [h.stem for h in retention.plan(hs, 3, 30, now, protect={"h0"})] == ["h1", "h2"]
    assert [h.stem for h in retention.plan(hs, 10, 1, now)] == ["h0", "h1", "h2", "h3", "h4"]
    assert retention.stem_of(Path("a_vertical.mp4")) == "a" == retention.stem_of(Path("a.json"))


def test_retention_enforce_on_real_files(make_settings: Callable[..., Settings]) -> None:
    settings = make_settings(
        keep_highlights_max=3, keep_highlights_days=10, output_min_free_mb=0, failure_ttl_days=7
    )
    out, clips = settings.output_dir, settings.clips_dir
    out.mkdir(parents=True)
    clips.mkdir(parents=True)
    now = time.time()
    for i, age in enumerate([20, 5, 4, 3, 2]):
        _highlight(out, f"h{i}", age, now)
    (out / "h4_vertical.mp4").write_bytes(b"v")
    stale = out / ".tmp-1-h9.mp4"
    stale.write_bytes(b"t")
    os.utime(stale, (now - 86400, now - 86400))
    fresh = out / ".tmp-2-h8.mp4"
    fresh.write_bytes(b"t")
    _highlight(clips, "old_failed", 8, now)
    _highlight(clips, "recent_failed", 1, now)
    removed = retention.enforce(settings, now=now)
    assert sorted(removed) == ["h0", "h1", "old_failed"]
    assert sorted(p.name for p in out.iterdir()) == sorted(
        [
            ".tmp-2-h8.mp4",
            "h2.mp4",
            "h2.jpg",
            "h2.json",
            "h3.mp4",
            "h3.jpg",
            "h3.json",
            "h4.mp4",
            "h4.jpg",
            "h4.json",
            "h4_vertical.mp4",
        ]
    )
    assert sorted(p.name for p in clips.iterdir()) == [
        "recent_failed.jpg",
        "recent_failed.json",
        "recent_failed.mp4",
    ]
    # Disk floor: everything but the protected highlight goes when the disk is "full".
    low = make_settings(keep_highlights_max=100, keep_highlights_days=100, output_min_free_mb=10**9)
    assert sorted(retention.enforce(low, protect={"h4"}, now=now)) == ["h2", "h3"]
    assert sorted(p.name for p in out.iterdir() if not p.name.startswith(".")) == [
        "h4.jpg",
        "h4.json",
        "h4.mp4",
        "h4_vertical.mp4",
    ]
