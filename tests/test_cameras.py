"""The cameras venues buy, end to end: H.264/H.265, AAC/G.711/no audio, 25/30 fps, GOP 1-4 s.

Each test serves one camera with GStreamer's RTSP server on loopback, records it with a real
`gravanois recorder`, presses, builds the raw clip with a real build worker, then renders it with a real
render worker, and checks the figures issue 13 asks for:
- the highlight lasts pre+post within one GOP;
- its audio and video durations agree within 0.05 s;
- the raw clip's timestamps span what the camera's own clock spans for the same frames (within 0.04 s),
  and the render keeps every frame and that span (no stretched video, no duplicated frames);
- the final video is H.264 and decodes with `ffmpeg -v error` printing nothing.
"""

from __future__ import annotations

import itertools
import json
from collections.abc import Callable
from pathlib import Path

import pytest
import redis

from common import sidecar
from common.ffmpeg import probe, probe_json, run
from common.segments import SegmentIndex
from common.settings import Settings
from common.timeutil import parse_iso
from harness.recorder_helpers import health
from harness.redis_server import free_port
from harness.rtsp_server import RtspServer
from recorder import keyframes
from tests.helpers import decode_errors, run_gravanois
from tests.test_trigger_e2e import built, e2e_settings, pipeline, press, wait_preroll

pytestmark = [
    pytest.mark.rtsp,
    pytest.mark.skipif(not RtspServer.available(), reason="GStreamer RTSP server bindings not installed"),
]

PRE, POST = 6.0, 4.0
SPAN_TOLERANCE = 0.04
AV_TOLERANCE = 0.05


def camera(video: str, audio: str, fps: int, gop: int, mode: str, slow: bool = False) -> object:
    """One parametrized camera, named like `h265-alaw-25fps-gop4-copy`."""
    marks = [pytest.mark.slow] if slow else []
    return pytest.param(
        video, audio, fps, gop, mode, id=f"{video}-{audio}-{fps}fps-gop{gop}-{mode}", marks=marks
    )


# (video, audio, fps, GOP s, mode): every codec × audio pair once in copy mode, 25 and 30 fps, GOP 1-4 s,
# and two G.711 cases in encode mode too (the holes showed in both modes). About 30 s each; the
# encode-mode pair (CPU for the whole run) is marked slow.
CAMERAS = [
    camera("h264", "aac", 30, 1, "copy"),
    camera("h264", "alaw", 25, 2, "copy"),
    camera("h264", "mulaw", 30, 3, "copy"),
    camera("h264", "none", 25, 4, "copy"),
    camera("h265", "aac", 25, 3, "copy"),
    camera("h265", "alaw", 25, 4, "copy"),  # a budget camera's factory settings
    camera("h265", "mulaw", 30, 2, "copy"),
    camera("h265", "none", 30, 1, "copy"),
    camera("h264", "alaw", 25, 2, "encode", slow=True),
    camera("h265", "mulaw", 30, 3, "encode", slow=True),
]


def packet_times(path: Path, stream: str) -> list[tuple[float, float]]:
    """(pts, duration) of every packet of one stream (`v:0`, `a:0`), in file order."""
    args = ["ffprobe", "-v", "error", "-select_streams", stream]
    args += ["-show_entries", "packet=pts_time,duration_time", "-of", "csv=p=0", str(path)]
    out = []
    for line in run(args, 60, what="ffprobe packets").stdout.decode().splitlines():
        pts, _, dur = line.strip().strip(",").partition(",")
        try:
            out.append((float(pts), float(dur) if dur not in ("", "N/A") else 0.0))
        except ValueError:
            continue
    return out


def frame_starts(packets: list[tuple[float, float]]) -> list[float]:
    """Sorted video frame times; the slices of one keyframe, sent as packets a hair apart, are one frame."""
    return keyframes.distinct([p for p, _ in packets])


def span(packets: list[tuple[float, float]]) -> float:
    """From the first packet's start to the last one's end."""
    return max(p + d for p, d in packets) - min(p for p, _ in packets)


def window_segments(conn: redis.Redis, s: Settings, data: dict) -> list[Path]:
    """The segment files the clip was built from, in order."""
    first, last = data["first_segment"], data["last_segment"]
    a, b = parse_iso(first["start"]), parse_iso(last["end"])
    segs = [
        x for x in SegmentIndex(conn, s.device_id, "cam1").all() if x.start >= a - 1e-3 and x.end <= b + 1e-3
    ]
    assert segs[0].name == first["name"] and segs[-1].name == last["name"], (first, last, segs)
    return [s.camera_buffer_dir("cam1") / x.name for x in segs]


def check_raw_clip(raw: Path, segments: list[Path], audio: str, split_keyframes: bool = False) -> list[float]:
    """The raw clip is the camera's frames with the camera's own timing: no stretch at the joins.

    `split_keyframes`: the camera sends each IDR as two packets a hair apart, which a decoder turns into
    two frames at one instant and reports; that is the camera's stream, copied as it is, so the raw
    clip's decode is not required to be silent (the final clip's is).
    """
    camera = frame_starts([p for seg in segments for p in packet_times(seg, "v:0")])
    frames = frame_starts(packet_times(raw, "v:0"))
    n = len(frames)
    assert 0 < n <= len(camera), (n, len(camera))
    camera_span, clip_span = camera[n - 1] - camera[0], frames[n - 1] - frames[0]
    print(f"FIGURES {raw.name} raw: {n} frames span {clip_span:.3f} s, camera clock {camera_span:.3f} s")
    assert abs(clip_span - camera_span) <= SPAN_TOLERANCE, (clip_span, camera_span)
    # No frame was lost or invented at a join: every step is one camera frame step.
    steps = [b - a for a, b in itertools.pairwise(frames)]
    camera_steps = [b - a for a, b in itertools.pairwise(camera[:n])]
    assert max(steps) <= max(camera_steps) + 0.005, (max(steps), max(camera_steps))
    if audio != "none":
        # The longest segment: a split keyframe's one-frame sliver has too little audio to describe.
        streams = probe_json(max(segments, key=lambda f: f.stat().st_size))["streams"]
        sound = next(st for st in streams if st["codec_type"] == "audio")
        # Copied when the camera sends AAC; G.711 re-encoded at 48 kHz, whose frames leave no holes.
        assert sound["codec_name"] == "aac" and sound["sample_rate"] == "48000", sound
    if not split_keyframes:
        assert decode_errors(raw) == ""
    return frames


def check_final_clip(final: Path, raw_frames: list[float], audio: str, gop: float) -> None:
    """The highlight phones get: H.264, pre+post within one GOP, A/V agree, every frame kept, clean."""
    info = probe(final)
    figures(final, raw_frames)
    assert info.codec == "h264", info
    # It starts on the keyframe at or before t - pre (up to one GOP early) and ends with the frame that
    # holds t + post (up to one frame late).
    longest = PRE + POST + gop + 1 / info.fps
    assert PRE + POST - 0.1 <= info.duration_sec <= longest, (info.duration_sec, gop)
    video = packet_times(final, "v:0")
    frames = sorted(p for p, _ in video)
    # The render neither duplicates frames (stretched video) nor drops them, and keeps their timing.
    assert abs(len(frames) - len(raw_frames)) <= 1, (len(frames), len(raw_frames))
    n = min(len(frames), len(raw_frames))
    assert abs((frames[n - 1] - frames[0]) - (raw_frames[n - 1] - raw_frames[0])) <= SPAN_TOLERANCE
    streams = {st["codec_type"]: st for st in probe_json(final)["streams"]}
    if audio == "none":
        assert "audio" not in streams
    else:
        assert streams["audio"]["codec_name"] == "aac"
        sound = packet_times(final, "a:0")
        assert abs(span(sound) - span(video)) <= AV_TOLERANCE, (span(sound), span(video))
        # In sync: audio neither starts late nor ends early.
        assert abs(min(p for p, _ in sound) - min(p for p, _ in video)) <= AV_TOLERANCE
    assert decode_errors(final) == ""


def figures(final: Path, raw_frames: list[float]) -> None:
    """One line of measured figures per clip (shown with `pytest -rP`), for notes and reports."""
    video = packet_times(final, "v:0")
    sound = packet_times(final, "a:0")
    av = f"{span(sound) - span(video):+.3f}" if sound else "n/a"
    print(
        f"FIGURES {final.name}: duration {probe(final).duration_sec:.3f} s (pre+post {PRE + POST:g}), "
        f"frames {len(video)} vs raw {len(raw_frames)}, audio-video {av} s"
    )


def record_press_build(
    make_settings: Callable[..., Settings],
    conn: redis.Redis,
    tmp_path: Path,
    server: RtspServer,
    mode: str,
    gop: float,
) -> tuple[Settings, dict, list[Path]]:
    """Record the camera, press once, build the raw clip (left for the test to check before the render
    removes it). Returns settings, what was seen (sidecar, health, recorder log, press), segment files."""
    s = e2e_settings(
        make_settings,
        source=server.url,
        pre_seconds=PRE,
        post_seconds=POST,
        buffer_seconds=120,
        stall_seconds=12,
        cameras=json.dumps([{"id": "cam1", "source": server.url, "mode": mode}]),
    )
    with pipeline(s, tmp_path) as rec:
        wait_preroll(conn, s, PRE + 2 * gop, timeout=90)
        p = press(s)
        data = built(conn, s, p, timeout=90)
        seen = {"sidecar": data, "health": health(conn, s, "cam1"), "log": rec.log(), "press": p}
    return s, seen, window_segments(conn, s, data)


def render(s: Settings, raw_name: str) -> Path:
    """Render the built clip with a real render worker (burst: it stops when the queue is empty)."""
    done = run_gravanois(s, "worker", "--queues", "render", "--burst", timeout=240)
    assert done.returncode == 0, done.stderr[-2000:]
    final = s.output_dir / f"{Path(raw_name).stem}.mp4"
    assert final.is_file(), (done.stdout[-1000:], done.stderr[-1000:])
    return final


def audio_events(log: str) -> list[dict]:
    return [json.loads(ln) for ln in log.splitlines() if ln.startswith("{") and '"event": "audio_plan"' in ln]


@pytest.mark.parametrize(
    ("video", "audio", "fps", "gop", "mode"),
    CAMERAS,
)
def test_camera_records_and_joins_exactly(
    make_settings: Callable[..., Settings],
    redis_conn: redis.Redis,
    tmp_path: Path,
    video: str,
    audio: str,
    fps: int,
    gop: int,
    mode: str,
) -> None:
    server = RtspServer(video=video, audio=audio, fps=fps, gop_seconds=gop).start()
    try:
        s, got, segments = record_press_build(make_settings, redis_conn, tmp_path, server, mode, gop)
        raw = s.clips_dir / sidecar.clip_name(got["press"])
        raw_frames = check_raw_clip(raw, segments, audio)
        final = render(s, raw.name)
    finally:
        server.stop()
    # In encode mode the recorder makes its own keyframes, one per GN_SEG_TIME.
    recorded_gop = gop if mode == "copy" else s.seg_time
    assert abs(float(got["health"]["keyframe_interval"]) - recorded_gop) <= 0.1, got["health"]
    check_final_clip(final, raw_frames, audio, recorded_gop)
    assert probe(final).fps == fps
    plans = audio_events(got["log"])
    if audio == "none":
        assert all(p["audio_codec"] is None for p in plans), plans
    else:
        # One line says what happens to the camera's audio: AAC copied, G.711 re-encoded.
        assert len(plans) == 1 and plans[0]["audio_copied"] is (audio == "aac"), plans
        assert ("copied" in plans[0]["msg"]) is (audio == "aac") and plans[0]["level"] == "info"


@pytest.mark.slow
def test_keyframes_sent_in_slices_measure_the_real_gop(
    make_settings: Callable[..., Settings], redis_conn: redis.Redis, tmp_path: Path
) -> None:
    """An IDR in four slices reaches ffmpeg as two key packets; the interval is still the GOP, not half."""
    gop = 2
    server = RtspServer(fps=25, gop_seconds=gop, audio="alaw", slices=4).start()
    try:
        s, got, segments = record_press_build(make_settings, redis_conn, tmp_path, server, "copy", gop)
        raw = s.clips_dir / sidecar.clip_name(got["press"])
        raw_frames = check_raw_clip(raw, segments, "alaw", split_keyframes=True)
        final = render(s, raw.name)
    finally:
        server.stop()
    # The camera really splits its keyframes: some key packets come in pairs a hair apart.
    keys = [t for seg in segments for t in keyframes.keyframe_times(seg)]
    assert len(keys) > len(keyframes.distinct(keys)), keys
    assert abs(float(got["health"]["keyframe_interval"]) - gop) <= 0.1, got["health"]
    # Such a camera can leave one slice-frame of an IDR in a piece of its own: the progressive join
    # would hold two frames 11 µs apart, so the render takes the single pass instead.
    assert sidecar.load(final.with_suffix(".json"))["render_path"] == "single-pass"
    # The highlight phones get, checked as for every camera: the decoder makes each split IDR two frames
    # at one instant, and the render (paced at the camera's rate) keeps one, so the frames are the
    # camera's and the audio stays with them.
    check_final_clip(final, raw_frames, "alaw", gop)
    info = probe(final)
    assert info.codec == "h264" and PRE + POST - 0.1 <= info.duration_sec <= PRE + POST + gop, info
    assert len(raw_frames) > 0 and decode_errors(final) == ""


def test_camera_probe_tells_what_a_budget_camera_sends(settings: Settings) -> None:
    with RtspServer(video="h265", audio="alaw", fps=25, gop_seconds=2) as server:
        done = run_gravanois(settings, "camera", "probe", server.url, "--seconds", "6", timeout=60)
    assert done.returncode == 0, done.stderr
    print(done.stdout)
    lines = done.stdout.splitlines()
    video = next(ln for ln in lines if ln.startswith("video"))
    assert "H.265 320x240 25 fps" in video and "copy mode" in video and "H.264" in video
    gop = next(ln for ln in lines if ln.startswith("keyframes"))
    # 2 s GOP against GN_SEG_TIME=1 s: the menu setting that fixes it, in frames.
    assert "every 2 s (50 frames)" in gop and "I-frame interval (GOP) = 25" in gop
    audio = next(ln for ln in lines if ln.startswith("audio"))
    assert "G.711 A-law 8 kHz" in audio and "re-encoded to AAC 48 kHz" in audio and "AAC" in audio
    assert len(lines) == 5


def test_camera_probe_of_an_unreachable_camera_is_one_line(settings: Settings) -> None:
    port = free_port()
    done = run_gravanois(settings, "camera", "probe", f"rtsp://admin:secret@127.0.0.1:{port}/cam", timeout=60)
    assert done.returncode == 1 and done.stdout == ""
    [line] = done.stderr.strip().splitlines()
    assert line.startswith("error: cannot read the camera at rtsp://***@127.0.0.1") and "secret" not in line
    assert "Connection refused" in line
