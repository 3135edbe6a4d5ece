"""The budget's encoders (worker/encoders.py): argument lists, a real 720p software encode, and the
hardware encoder refused by its probe on a machine without a Pi 4's /dev/video11 (this one).

The hardware encode itself cannot run here (no V4L2 H.264 device): only its arguments are checked.
"""

from __future__ import annotations

import json
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest

from common.budget import Size, VideoEncoder
from common.ffmpeg import FFPROBE, FFmpegError, probe, run
from common.segments import Segment
from common.settings import Settings
from common.watermark import Watermark
from harness.media import make_logo, make_video, segment_stream
from worker import encoders
from worker.recipe import Recipe


def test_720p_scales_only_a_taller_camera_keeping_its_shape_even() -> None:
    assert encoders.out_size(Size.P720, 1920, 1080) == (1280, 720)
    assert encoders.out_size(Size.P720, 2560, 1440) == (1280, 720)
    assert encoders.out_size(Size.P720, 1280, 960) == (960, 720)
    assert encoders.out_size(Size.P720, 1280, 720) == (1280, 720)
    assert encoders.out_size(Size.SOURCE, 1920, 1080) == (1920, 1080)
    assert encoders.sizes_for(1080) == [Size.SOURCE, Size.P720]
    assert encoders.sizes_for(720) == [Size.SOURCE]


def test_the_hardware_bitrate_follows_size_and_rate_within_the_encoders_limits() -> None:
    assert encoders.hw_kbps(1920, 1080, 30) == 6220
    assert encoders.hw_kbps(1280, 720, 30) == 2764
    assert encoders.hw_kbps(1920, 1080, 15) == 3110
    assert encoders.hw_kbps(160, 120, 5) == 500  # a floor
    assert encoders.hw_kbps(1920, 1080, 300) == encoders.HW_MAX_KBPS  # a ceiling


def test_the_hardware_encoder_takes_up_to_1080p30() -> None:
    assert encoders.hw_fits(1920, 1080, 30)
    assert encoders.hw_fits(1080, 1920, 30)  # portrait
    assert encoders.hw_fits(1920, 1080, 30000 / 1001)
    assert not encoders.hw_fits(2560, 1440, 30)
    assert not encoders.hw_fits(1920, 1080, 60)


def test_hardware_arguments_are_bitrate_controlled_yuv420p_with_keyframes_for_joins() -> None:
    args = encoders.codec_args(VideoEncoder.HARDWARE, 1920, 1080, 30.0, "ultrafast", 20)
    assert args[args.index("-c:v") + 1] == "h264_v4l2m2m"
    assert args[args.index("-b:v") + 1] == "6220k"
    assert args[args.index("-maxrate") + 1] == "6220k"
    assert args[args.index("-pix_fmt") + 1] == "yuv420p"
    assert "-crf" not in args and "-preset" not in args  # no CRF on the Pi's encoder
    assert args[args.index("-g") + 1] == "60"
    assert args[args.index("-force_key_frames") + 1] == "expr:gte(t,n_forced*2)"
    assert args[args.index("-bsf:v") + 1] == "dump_extra=freq=keyframe"


def test_software_arguments_are_the_recipes_x264_with_the_same_keyframes() -> None:
    args = encoders.codec_args(VideoEncoder.SOFTWARE, 1280, 720, 25.0, "veryfast", 23)
    assert args[:8] == ["-c:v", "libx264", "-preset", "veryfast", "-crf", "23", "-pix_fmt", "yuv420p"]
    assert args[args.index("-g") + 1] == "50"
    assert args[args.index("-force_key_frames") + 1] == "expr:gte(t,n_forced*2)"


def test_the_graph_scales_before_the_logo_is_sized_from_the_output(tmp_path: Path) -> None:
    wm = Watermark(logo=make_logo(tmp_path / "logo.png"), rel_width=0.2)
    small = encoders.graph(wm, "30/1", 1920, 1080, Size.P720)
    assert small.startswith("[0:v]fps=30/1[paced];[paced]scale=1280:720:flags=bilinear[small];")
    assert "scale=256:-2" in small  # 0.2 of 1280
    full = encoders.graph(wm, "30/1", 1920, 1080, Size.SOURCE)
    assert "scale=1280:720" not in full and "scale=384:-2" in full


def test_a_720p_software_encode_is_720_lines_with_a_keyframe_every_two_seconds(tmp_path: Path) -> None:
    src = make_video(tmp_path / "tall.mp4", seconds=5, size="1280x960", fps=10, audio=False)
    wm = Watermark(logo=make_logo(tmp_path / "logo.png"))
    out = tmp_path / "out.ts"
    args = [
        *("ffmpeg", "-hide_banner", "-nostdin", "-loglevel", "error", "-y", "-i", str(src)),
        *("-i", str(wm.logo), "-filter_complex", encoders.graph(wm, "10/1", 1280, 960, Size.P720)),
        *("-map", "[wm]", *encoders.codec_args(VideoEncoder.SOFTWARE, 960, 720, 10.0, "ultrafast", 30)),
        *("-f", "mpegts", str(out)),
    ]
    run(args, 120)
    probe = [FFPROBE, "-v", "error", "-select_streams", "v:0", "-show_entries", "stream=width,height"]
    stream = json.loads(subprocess.check_output([*probe, "-of", "json", str(out)]))["streams"][0]
    assert (stream["width"], stream["height"]) == (960, 720)
    frames = [FFPROBE, "-v", "error", "-select_streams", "v:0", "-show_entries", "packet=pts_time,flags"]
    lines = subprocess.check_output([*frames, "-of", "csv=p=0", str(out)], text=True).split()
    times = [float(line.split(",")[0]) for line in lines if "K" in line.split(",")[1]]
    first = times[0]
    assert [round(t - first, 1) for t in times] == [0.0, 2.0, 4.0]


def test_the_hardware_encoder_is_refused_here_by_its_device_and_by_its_probe() -> None:
    if encoders.HW_DEVICE.exists():
        pytest.skip("this machine has a V4L2 H.264 encoder: the refusal cannot be shown")
    encoders.hardware_problem.cache_clear()
    assert encoders.hardware_problem() == "no /dev/video11 (a Raspberry Pi 4's H.264 encoder)"
    # The probe itself fails too, whatever this ffmpeg's build lists among its encoders.
    with pytest.raises(FFmpegError):
        run(encoders.probe_args(), encoders.PROBE_TIMEOUT, what="h264_v4l2m2m probe")


def test_a_720p_recipe_makes_pieces_of_720_lines_under_its_own_key(
    make_settings: Callable[..., Settings], tmp_path: Path
) -> None:
    s = make_settings(wm_logo=make_logo(tmp_path / "logo.png"))
    rows = segment_stream(s.camera_buffer_dir("cam1"), 3, "1280x960", 10)
    segs = [Segment(a, b, name, "r1") for name, a, b in rows]
    wm = Watermark.from_settings(s)
    first = s.camera_buffer_dir("cam1") / segs[0].name
    full = Recipe.of(s, wm, first)
    small = Recipe.of(s, wm, first, VideoEncoder.SOFTWARE, Size.P720)
    assert full == Recipe.of(
        s, wm, first, VideoEncoder.SOFTWARE, Size.SOURCE
    )  # the default recipe, its key kept
    assert small.key != full.key and small.rate == full.rate == "10/1"
    small.encode(segs, s.camera_buffer_dir("cam1"), tmp_path / "piece.ts")
    info = probe(tmp_path / "piece.ts")
    assert (info.width, info.height) == (960, 720)
    hardware = Recipe.of(s, wm, first, VideoEncoder.HARDWARE, Size.P720)
    assert "h264_v4l2m2m" in hardware.codec and hardware.key != small.key
