"""recorder/probe.py and ops/camera.py's table: what a camera sends, with real ffprobe on real files."""

from __future__ import annotations

import json
import logging
import subprocess
from pathlib import Path

import pytest

from common.ffmpeg import FFmpegError, base_args
from common.settings import Settings
from harness.media import make_video
from ops.camera import report
from recorder import probe
from recorder.presets import AudioIn


def g711_file(path: Path) -> Path:
    """2 s of H.264 video with G.711 A-law audio at 8 kHz (in Matroska, which can carry it)."""
    args = [*base_args(), "-f", "lavfi", "-i", "testsrc2=size=320x240:rate=25:duration=2"]
    args += ["-f", "lavfi", "-i", "sine=frequency=440:sample_rate=8000:duration=2"]
    args += ["-c:v", "libx264", "-preset", "ultrafast", "-g", "25", "-c:a", "pcm_alaw", str(path)]
    subprocess.run(args, check=True, timeout=60)
    return path


def test_probe_source_reads_codecs_rates_and_gop(tmp_path: Path) -> None:
    aac = probe.probe_source(str(make_video(tmp_path / "aac.mp4", seconds=4, fps=25, gop=50)), read_seconds=4)
    assert (aac.video_codec, aac.width, aac.height, aac.fps) == ("h264", 320, 240, 25.0)
    assert aac.audio == AudioIn("aac", 48000) and aac.audio.copyable()
    assert aac.keyframe_interval == 2.0
    g711 = probe.probe_source(str(g711_file(tmp_path / "g711.mkv")))
    assert g711.audio == AudioIn("pcm_alaw", 8000) and not g711.audio.copyable()
    assert g711.keyframe_interval is None  # not asked to read packets
    with pytest.raises(FFmpegError):
        probe.probe_source(str(tmp_path / "nothing.mp4"))


def test_parse_counts_a_keyframe_sent_in_slices_once() -> None:
    packets = [
        {"stream_index": 0, "pts_time": f"{t:.6f}", "flags": "K_"} for t in (0.5, 0.500011, 2.5, 2.500011)
    ]
    packets.insert(1, {"stream_index": 1, "pts_time": "0.6", "flags": "K_"})  # audio packets are all key
    data = {
        "streams": [
            {"index": 0, "codec_type": "video", "codec_name": "hevc", "width": 1920, "height": 1080,
             "avg_frame_rate": "25/1"},
            {"index": 1, "codec_type": "audio", "codec_name": "pcm_mulaw", "sample_rate": "8000"},
        ],
        "packets": packets,
    }  # fmt: skip
    info = probe.parse(data)
    assert info.keyframe_interval == 2.0 and info.fps == 25.0 and info.audio == AudioIn("pcm_mulaw", 8000)
    assert "re-encoded to AAC 48000 Hz" in probe.plan_text(info.audio)
    assert probe.plan_text(AudioIn("aac", 48000)) == "AAC 48000 Hz audio, copied"
    assert "holes" in probe.plan_text(AudioIn("aac", 8000))
    assert probe.parse(json.loads("{}")).video_codec is None


def test_camera_audio_is_logged_once_per_change(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    source = str(g711_file(tmp_path / "g711.mkv"))
    with caplog.at_level(logging.INFO, logger="recorder.probe"):
        assert probe.camera_audio("camX", source, "tcp", 5.0) == AudioIn("pcm_alaw", 8000)
        assert probe.camera_audio("camX", source, "tcp", 5.0) == AudioIn("pcm_alaw", 8000)
    lines = [r.getMessage() for r in caplog.records if r.name == "recorder.probe"]
    assert lines == [
        "camera camX sends G.711 A-law 8000 Hz audio, re-encoded to AAC 48000 Hz (MPEG-TS cannot carry it)"
    ]
    # The synthetic camera and webcams are not asked: their raw audio is encoded anyway.
    assert probe.camera_audio("camY", "testsrc", "tcp", 5.0) is None


def test_probe_table_says_what_to_change(settings: Settings) -> None:
    budget = probe.SourceInfo("hevc", 1920, 1080, 25.0, AudioIn("pcm_alaw", 8000), keyframe_interval=4.0)
    rows = {what: (sends, means) for what, sends, means in report(budget, settings, 10)}
    assert rows["video"][0] == "H.265 1920x1080 25 fps" and "copy mode" in rows["video"][1]
    assert (
        rows["keyframes"][0] == "every 4 s (100 frames)"
        and "I-frame interval (GOP) = 25" in rows["keyframes"][1]
    )
    assert rows["audio"][0] == "G.711 A-law 8 kHz" and "AAC, 48 kHz" in rows["audio"][1]
    good = probe.SourceInfo("h264", 1280, 720, 30.0, AudioIn("aac", 48000), keyframe_interval=1.0)
    assert all(means.endswith("good") for what, _, means in report(good, settings, 10) if what != "video")
    mjpeg = probe.SourceInfo("mjpeg", 640, 480, 15.0, None, keyframe_interval=None)
    rows = {what: (sends, means) for what, sends, means in report(mjpeg, settings, 10)}
    assert "encode mode" in rows["video"][1] and rows["audio"][0] == "none"
    assert "fewer than 2 in 10 s" in rows["keyframes"][0]
