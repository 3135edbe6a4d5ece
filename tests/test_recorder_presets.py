"""recorder/presets.py: the ffmpeg command lines, checked without running ffmpeg."""

from __future__ import annotations

from pathlib import Path

import pytest

from common import watermark
from recorder import presets
from recorder.presets import SourceKind


@pytest.mark.parametrize(
    ("source", "kind"),
    [
        ("testsrc", SourceKind.SYNTHETIC),
        ("testsrc:320x240@15", SourceKind.SYNTHETIC),
        ("rtsp://admin:pw@192.0.2.1:554/Streaming/Channels/101", SourceKind.RTSP),
        ("/dev/video0", SourceKind.V4L2),
        ("/dev/video2?input_format=yuyv422", SourceKind.V4L2),
        ("tcp://127.0.0.1:9000", SourceKind.NETWORK),
        ("udp://127.0.0.1:9000", SourceKind.NETWORK),
        ("/srv/court.mp4", SourceKind.FILE),
    ],
)
def test_source_kind(source: str, kind: SourceKind) -> None:
    assert presets.source_kind(source) is kind


def test_synthetic_spec() -> None:
    assert presets.parse_synthetic("testsrc") == presets.Synthetic()
    assert presets.parse_synthetic("testsrc:320x240@15") == presets.Synthetic(320, 240, 15)
    assert presets.parse_synthetic("testsrc:1280x720") == presets.Synthetic(1280, 720, presets.SYNTHETIC_FPS)
    with pytest.raises(ValueError, match="testsrc:640x360@25"):
        presets.parse_synthetic("testsrc:big")


def test_rtsp_input_is_tcp_with_socket_timeout_in_microseconds() -> None:
    args = presets.input_args("rtsp://cam/s", "tcp", 5.0)
    assert args == ["-rtsp_transport", "tcp", "-timeout", "5000000", "-i", "rtsp://cam/s"]
    assert presets.input_args("rtsp://cam/s", "udp", 2.5)[:4] == [
        "-rtsp_transport",
        "udp",
        "-timeout",
        "2500000",
    ]


def test_v4l2_input_defaults_to_mjpeg_and_takes_options() -> None:
    args = presets.input_args("/dev/video0")
    assert args[:2] == ["-f", "v4l2"] and args[-2:] == ["-i", "/dev/video0"]
    assert args[args.index("-input_format") + 1] == "mjpeg"
    args = presets.input_args("/dev/video1?input_format=yuyv422&video_size=1280x720&bogus=1")
    assert args[args.index("-input_format") + 1] == "yuyv422"
    assert args[args.index("-video_size") + 1] == "1280x720"
    assert "-bogus" not in args and args[-1] == "/dev/video1"


def test_synthetic_input_is_realtime_with_clock_and_tone(tmp_path: Path) -> None:
    args = presets.input_args("testsrc:320x240@15")
    assert args[:3] == ["-re", "-f", "lavfi"]
    graph = args[-1]
    assert "testsrc2=size=320x240:rate=15" in graph and "drawtext=" in graph and "%{localtime}" in graph
    assert "sine=" in graph and f"fontfile={presets.FONT}" in graph
    # No DejaVu font: drawtext falls back to fontconfig's default instead of failing.
    missing = presets.synthetic_graph(presets.Synthetic(), font=tmp_path / "none.ttf")
    assert "fontfile" not in missing and "drawtext=" in missing


def test_file_and_network_inputs() -> None:
    assert presets.input_args("/srv/a.mp4") == ["-re", "-stream_loop", "-1", "-i", "/srv/a.mp4"]
    assert presets.input_args("tcp://h:1", timeout_seconds=3) == ["-rw_timeout", "3000000", "-i", "tcp://h:1"]
    assert presets.input_args("udp://h:1") == ["-i", "udp://h:1"]


def test_modes() -> None:
    assert presets.effective_mode(SourceKind.RTSP, "copy") == "copy"
    assert presets.effective_mode(SourceKind.SYNTHETIC, "copy") == "encode"
    assert presets.effective_mode(SourceKind.V4L2, "copy") == "encode"
    assert presets.video_args("copy", "libx264", 1.0) == ["-c:v", "copy"]
    x264 = presets.video_args("encode", "libx264", 2.0)
    assert x264[:6] == ["-c:v", "libx264", "-preset", "ultrafast", "-tune", "zerolatency"]
    assert x264[-2:] == ["-force_key_frames", "expr:gte(t,n_forced*2)"]
    hw = presets.video_args("encode", "h264_v4l2m2m", 1.0)
    assert hw[:2] == ["-c:v", "h264_v4l2m2m"] and "expr:gte(t,n_forced*1)" in hw


def test_record_args_segment_muxer_keeps_timestamps(tmp_path: Path) -> None:
    pattern = presets.part_pattern(tmp_path, "42-1")
    args = presets.record_args("rtsp://cam/s", "copy", "libx264", 1.0, pattern)
    assert args[0] == "ffmpeg" and args[-1] == str(tmp_path / "part_42-1_%06d.ts")
    joined = " ".join(args)
    assert "-f segment -segment_format mpegts -segment_time 1 " in joined
    assert "-segment_list pipe:1 -segment_list_type csv" in joined
    assert "-reset_timestamps" not in args
    assert "-c:v copy" in joined and "-c:a aac" in joined and "-map 0:a:0?" in joined


def test_keyframe_probe_args(tmp_path: Path) -> None:
    args = presets.keyframe_probe_args(tmp_path / "a.ts")
    # Packets, not decoded frames: an IDR in slices is several key packets at one instant.
    assert args[0] == "ffprobe" and args[args.index("-show_entries") + 1] == "packet=pts_time,flags"
    assert args[args.index("-select_streams") + 1] == "v:0" and args[-1] == str(tmp_path / "a.ts")


def test_audio_copied_only_when_aac_with_short_frames() -> None:
    assert presets.audio_args(presets.AudioIn("aac", 48000)) == ["-c:a", "copy"]
    assert presets.audio_args(presets.AudioIn("aac", 44100)) == ["-c:a", "copy"]
    # G.711, 8/16 kHz AAC (128/64 ms frames) and unknown audio: AAC at 48 kHz through aresample.
    for audio in (presets.AudioIn("pcm_alaw", 8000), presets.AudioIn("pcm_mulaw", 8000), None):
        args = presets.audio_args(audio)
        assert args[args.index("-af") + 1] == "aresample=48000" and args[args.index("-c:a") + 1] == "aac"
        assert args[args.index("-ar") + 1] == "48000"
    assert "copy" not in presets.audio_args(presets.AudioIn("aac", 16000))
    pattern = Path("/tmp/part_%06d.ts")
    copied = presets.record_args(
        "rtsp://cam/s", "copy", "libx264", 1.0, pattern, audio=presets.AudioIn("aac", 48000)
    )
    assert " ".join(copied).count("-c:a copy") == 1 and "-af" not in copied


def test_source_probe_args() -> None:
    quick = presets.source_probe_args("rtsp://cam/s", "tcp", 5.0)
    assert quick[0] == "ffprobe" and quick[-2:] == ["-i", "rtsp://cam/s"]
    assert (
        quick[quick.index("-rtsp_transport") + 1] == "tcp" and quick[quick.index("-timeout") + 1] == "5000000"
    )
    # Only the description: no analysis time, no packets.
    assert quick[quick.index("-analyzeduration") + 1] == "0" and "packet" not in " ".join(quick)
    long = presets.source_probe_args("rtsp://cam/s", "udp", 2.0, read_seconds=10)
    assert long[long.index("-read_intervals") + 1] == "%+10" and "packet=" in " ".join(long)
    assert "-rtsp_transport" not in presets.source_probe_args("/srv/cam.mp4")
    # A password stays out of the arguments (`ps`): the URL goes on stdin, like the recorder's.
    secret = presets.source_probe_args("rtsp://u:s3cret@cam/s", "tcp", 5.0)
    assert "s3cret" not in " ".join(secret) and secret[-2:] == ["-i", "pipe:0"]
    assert b"s3cret" in (presets.input_script("rtsp://u:s3cret@cam/s") or b"")


def test_watermark_at_record_only_in_encode_mode(tmp_path: Path) -> None:
    wm = watermark.Watermark(logo=tmp_path / "logo.png")
    pattern = presets.part_pattern(tmp_path, "1-1")
    args = presets.record_args("testsrc:320x240@15", "copy", "libx264", 1.0, pattern, wm=wm)
    # The synthetic camera is encoded anyway: logo input after the camera, graph sized from 320 px.
    assert args[args.index("-i", args.index("-i") + 1) + 1] == str(tmp_path / "logo.png")
    graph = args[args.index("-filter_complex") + 1]
    assert "scale=64:-2" in graph and "[0:v]" in graph
    assert args[args.index("-map") + 1] == "[wm]" and "libx264" in args
    # An RTSP camera in copy mode cannot be watermarked while recording: no logo, plain copy.
    copy = presets.record_args("rtsp://cam/s", "copy", "libx264", 1.0, pattern, wm=wm)
    assert "-filter_complex" not in copy and str(tmp_path / "logo.png") not in copy
    # In encode mode the width is unknown, so the graph measures it (scale2ref).
    enc = presets.record_args("rtsp://cam/s", "encode", "libx264", 1.0, pattern, wm=wm)
    assert (
        "scale2ref" in enc[enc.index("-filter_complex") + 1]
        and "[0:v:0]" in enc[enc.index("-filter_complex") + 1]
    )


def test_credentials_go_to_stdin_not_to_the_arguments() -> None:
    url = "rtsp://admin:p%40ss'w@192.168.1.64:554/Streaming/Channels/101"
    args = presets.record_args(url, "copy", "libx264", 1.0, Path("/b/part_%06d.ts"), timeout_seconds=2.5)
    assert not [a for a in args if "p%40ss" in a or "192.168" in a]
    assert args[args.index("-i") - 6 : args.index("-i") + 2] == [
        "-f", "concat", "-safe", "0", "-protocol_whitelist", presets.SCRIPT_PROTOCOLS, "-i", "pipe:0"
    ]  # fmt: skip
    script = presets.input_script(url, "tcp", 2.5)
    assert script is not None
    # ffconcat quoting: a quote inside the URL is closed, escaped and reopened.
    assert script.decode().splitlines() == [
        "ffconcat version 1.0",
        "file 'rtsp://admin:p%40ss'\\''w@192.168.1.64:554/Streaming/Channels/101'",
        "option rtsp_transport tcp",
        "option timeout 2500000",
    ]
    # Without credentials nothing changes: the URL is the input, nothing is read on stdin.
    plain = "rtsp://192.168.1.64:554/stream1"
    assert presets.input_script(plain) is None and plain in presets.input_args(plain)
    assert presets.input_script("testsrc") is None
