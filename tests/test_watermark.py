"""common.watermark: the filtergraph text (pure) and what ffmpeg makes of it (real runs, tiny clips)."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from common.settings import load_settings
from common.watermark import (
    OPPOSITE,
    Watermark,
    filtergraph,
    input_args,
    logo_width,
    outputs,
    overlay_xy,
    vertical_size,
)
from harness.media import make_logo, make_video

LOGO = Path("/nonexistent/logo.png")


def test_logo_width_is_even_fraction_of_video_width() -> None:
    assert logo_width(1280, 0.2) == 256
    assert logo_width(320, 0.2) == 64
    assert logo_width(333, 0.1) == 32
    assert logo_width(10, 0.01) == 2


def test_vertical_size_is_centred_9_16() -> None:
    assert vertical_size(1280, 720) == (404, 720)
    assert vertical_size(1920, 1080) == (606, 1080)
    # Already narrower than 9:16: keep the width, cut the height.
    assert vertical_size(360, 1000) == (360, 640)


@pytest.mark.parametrize(
    ("position", "x", "y"),
    [
        ("bottom-right", "main_w-overlay_w-24", "main_h-overlay_h-24"),
        ("bottom-left", "24", "main_h-overlay_h-24"),
        ("top-right", "main_w-overlay_w-24", "24"),
        ("top-left", "24", "24"),
    ],
)
def test_overlay_xy_per_corner(position: str, x: str, y: str) -> None:
    assert overlay_xy(position, 24) == (x, y)


def test_opposite_corner_is_diagonal() -> None:
    assert OPPOSITE["bottom-right"] == "top-left"
    assert OPPOSITE["top-right"] == "bottom-left"
    assert all(OPPOSITE[OPPOSITE[p]] == p for p in OPPOSITE)


def test_single_logo_known_width_graph() -> None:
    g = filtergraph(Watermark(LOGO, opacity=0.6, margin=10), width=1280, height=720)
    assert g == (
        "[1:v]scale=256:-2,format=rgba,colorchannelmixer=aa=0.6[wl0];"
        "[0:v][wl0]overlay=x=main_w-overlay_w-10:y=main_h-overlay_h-10,format=yuv420p[wm]"
    )
    assert outputs() == ["[wm]"]


def test_full_opacity_skips_the_mixer_and_second_logo_goes_opposite() -> None:
    g = filtergraph(Watermark(LOGO, logo2=LOGO, opacity=1.0, position="top-right", margin=5), 640, 360)
    assert "colorchannelmixer" not in g
    assert "[2:v]scale=128:-2,format=rgba" in g
    assert "overlay=x=main_w-overlay_w-5:y=5[wo0]" in g  # first logo top-right
    assert "overlay=x=5:y=main_h-overlay_h-5,format=yuv420p[wm]" in g  # second bottom-left


def test_unknown_width_uses_scale2ref_and_custom_inputs() -> None:
    g = filtergraph(Watermark(LOGO, rel_width=0.25), video="0:v:0", first_logo_input=2)
    assert g.startswith("[2:v][0:v:0]scale2ref=w='trunc(iw*0.25/2)*2':h='trunc(ow/main_a/2)*2'")
    assert g.endswith("format=yuv420p[wm]")


def test_vertical_adds_a_second_output_from_one_decode() -> None:
    g = filtergraph(Watermark(LOGO), 1280, 720, vertical=True)
    assert g.startswith("[0:v]split=2[m0][m1];[1:v]split=2[lg0a][lg0b]")
    assert "[m1]crop=404:720:438:0[vc]" in g
    assert "[lg0b]scale=80:-2" in g  # 0.2 of the crop's width
    assert outputs(vertical=True) == ["[wm]", "[wmv]"]
    only = filtergraph(Watermark(LOGO), 1280, 720, landscape=False, vertical=True)
    assert "split" not in only and only.endswith("[wmv]")


def test_bad_values_are_refused() -> None:
    with pytest.raises(ValueError, match="position"):
        Watermark(LOGO, position="middle")
    with pytest.raises(ValueError, match="opacity"):
        Watermark(LOGO, opacity=1.5)
    with pytest.raises(ValueError, match="at least one output"):
        filtergraph(Watermark(LOGO), landscape=False)


def test_from_settings_and_input_args(tmp_path: Path) -> None:
    s = load_settings(
        {"data_dir": tmp_path, "wm_logo2": tmp_path / "b.png", "wm_opacity": 0.5, "wm_position": "top-left"},
        env_file=None,
    )
    wm = Watermark.from_settings(s)
    assert wm.logos == [s.wm_logo, tmp_path / "b.png"]
    assert (wm.opacity, wm.position) == (0.5, "top-left")
    assert input_args(wm) == ["-i", str(s.wm_logo), "-i", str(tmp_path / "b.png")]


def _frame(path: Path, w: int, h: int, at: float = 0.5) -> bytes:
    args = ["ffmpeg", "-v", "error", "-ss", str(at), "-i", str(path), "-frames:v", "1"]
    out = subprocess.run([*args, "-f", "rawvideo", "-pix_fmt", "rgb24", "-"], capture_output=True, check=True)
    assert len(out.stdout) == w * h * 3
    return out.stdout


@pytest.mark.parametrize("known", [True, False], ids=["width-known", "scale2ref"])
def test_ffmpeg_burns_the_logo_in_the_corner_only(tmp_path: Path, known: bool) -> None:
    src = make_video(tmp_path / "in.mp4", seconds=1, size="320x240", fps=15, audio=False)
    logo = make_logo(tmp_path / "logo.png", size="100x50", color="red")
    wm = Watermark(logo, opacity=1.0, margin=8, position="bottom-right")
    g = filtergraph(wm, *((320, 240) if known else (None, None)))
    out = tmp_path / "out.mp4"
    cmd = ["ffmpeg", "-v", "error", "-y", "-i", str(src), *input_args(wm), "-filter_complex", g]
    subprocess.run([*cmd, "-map", "[wm]", "-c:v", "libx264", "-qp", "0", str(out)], check=True)
    a, b = _frame(src, 320, 240), _frame(out, 320, 240)
    # Logo: 64x32 at x 248..312, y 200..232. Inside it the pixels are red, outside they are unchanged.
    px = (216 * 320 + 280) * 3
    r, g_, bl = b[px : px + 3]
    assert r > 200 and g_ < 60 and bl < 60
    diff_out = [abs(a[i] - b[i]) for i in range(0, 180 * 320 * 3, 7)]
    assert max(diff_out) <= 12


def test_ffmpeg_two_logos_and_vertical_crop_in_one_run(tmp_path: Path) -> None:
    src = make_video(tmp_path / "in.mp4", seconds=1, size="320x240", fps=15, audio=False)
    wm = Watermark(make_logo(tmp_path / "a.png"), logo2=make_logo(tmp_path / "b.png", color="blue"))
    cmd = ["ffmpeg", "-v", "error", "-y", "-i", str(src), *input_args(wm)]
    cmd += ["-filter_complex", filtergraph(wm, 320, 240, vertical=True)]
    for label, name in zip(outputs(vertical=True), ("h.mp4", "v.mp4"), strict=True):
        cmd += ["-map", label, "-c:v", "libx264", "-preset", "ultrafast", str(tmp_path / name)]
    subprocess.run(cmd, check=True)
    sizes = []
    for name in ("h.mp4", "v.mp4"):
        probe = ["ffprobe", "-v", "error", "-show_entries", "stream=width,height", "-of", "csv=p=0"]
        sizes.append(subprocess.run([*probe, str(tmp_path / name)], capture_output=True, text=True).stdout)
    assert [s.strip() for s in sizes] == ["320,240", "134,240"]
