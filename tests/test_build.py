"""Build stage with real ffmpeg segments, real Redis and a real `gravanois worker --queues build`."""

from __future__ import annotations

import json
import shutil
import threading
import time
from collections.abc import Callable
from dataclasses import asdict

import pytest
import redis

from common import journal, keys, sidecar
from common.ffmpeg import probe
from common.fsutil import sha256_file
from common.journal import PressRecord
from common.pipeline import STAGES, Stage, job_id, queue, retry_policy
from common.segments import Segment, SegmentIndex, runs
from common.settings import Settings
from common.timeutil import iso, parse_iso
from recorder.health import Health
from tests.build_helpers import files_under, make_segments, run_build_worker
from tests.helpers import SEED_FIELDS, decode_errors, fetch, publish_health
from trigger import press as press_mod
from worker import build, pieces, tsfiles

SIDECAR_FIELDS = {
    *SEED_FIELDS,
    "camera",
    "press_at",
    "press_id",
    "window",
    "segments",
    "gaps",
    "first_segment",
    "last_segment",
    "actual_window",
}
# Index entries whose name is not a plain file name in the camera's buffer: never opened.
HOSTILE_NAMES = ("../x.ts", "a/b.ts", ".hidden.ts")


def reason(job) -> str:
    result = job.latest_result()
    return result.exc_string if result is not None and result.exc_string else ""


def _settings(make_settings: Callable[..., Settings], **kw: object) -> Settings:
    base = {"pre_seconds": 5, "post_seconds": 2, "seg_time": 1, "buffer_seconds": 60, "cooldown_seconds": 0}
    return make_settings(**{**base, **kw})


# ---- pure parts


def test_concat_args_copy_faststart_concat_demuxer(tmp_path):
    args = build.concat_args(tmp_path / "l.ffconcat", tmp_path / "o.mp4")
    assert args[0] == "ffmpeg"
    assert args[args.index("-f") : args.index("-f") + 2] == ["-f", "concat"]
    assert args[args.index("-safe") + 1] == "0"
    assert args[args.index("-c") + 1] == "copy"
    assert args[args.index("-movflags") + 1] == "+faststart"
    assert args[-1] == str(tmp_path / "o.mp4") and "-t" not in args
    # Ending at the window's end: an output duration, placed after the input.
    limited = build.concat_args(tmp_path / "l.ffconcat", tmp_path / "o.mp4", 9.25)
    assert limited[limited.index("-t") + 1] == "9.250" and limited.index("-t") > limited.index("-i")


def test_concat_list_quotes_paths(tmp_path):
    text = build.concat_list([tmp_path / "a.ts", tmp_path / "it's.ts"])
    lines = text.splitlines()
    assert lines[0] == "ffconcat version 1.0"
    assert lines[1] == f"file '{tmp_path / 'a.ts'}'"
    assert lines[2] == f"file '{tmp_path}/it'\\''s.ts'"


def test_find_gaps():
    segs = [Segment(0, 1, "a"), Segment(1, 2, "b"), Segment(4, 5, "c")]
    assert build.find_gaps(segs, 0.5, 4.5) == [(2, 4)]
    assert build.find_gaps(segs, -1, 6) == [(-1, 0), (2, 4), (5, 6)]
    assert build.find_gaps(segs, 0, 2) == []
    # jitter below the tolerance is not a gap
    assert build.find_gaps([Segment(0, 1, "a"), Segment(1.05, 2, "b")], 0, 2) == []


def test_runs_byte_for_byte_only_within_one_stream(make_settings, redis_conn: redis.Redis) -> None:
    s = _settings(make_settings)
    first = make_segments(s, redis_conn, "cam1", 1000.0, 4, index=False)
    # A second ffmpeg run whose first segment tiles exactly after the first run's last one (a restart
    # within the millisecond): the index says contiguous, the timestamps start again, the run id says so.
    second = make_segments(s, redis_conn, "cam1", first[-1].end, 3, index=False)
    directory = s.camera_buffer_dir("cam1")
    assert first[-1].end == second[0].start
    pts = [t for x in first if (t := tsfiles.first_video_pts(directory / x.name)) is not None]
    assert len(pts) == len(first) and all(
        b - a == pytest.approx(x.duration, abs=0.05) for a, b, x in zip(pts, pts[1:], first, strict=False)
    )
    assert first[0].run and second[0].run != first[0].run
    groups = runs([*first, *second])
    assert groups == [first, second]
    entries = build.join_entries([[directory / x.name for x in g] for g in groups])
    assert all(
        isinstance(e, str) and e.startswith("concat:") and e.count("|") == len(g) - 1
        for e, g in zip(entries, groups, strict=True)
    )
    # A hole in the index starts a new run too; a single file stays a plain path.
    gapped = [first[0], *first[2:]]
    assert [len(g) for g in runs(gapped)] == [1, len(first) - 2]
    assert build.join_entries([[directory / first[0].name]]) == [directory / first[0].name]
    assert tsfiles.first_video_pts(directory / "missing.ts") is None


def test_clip_ends_on_a_video_frame_boundary() -> None:
    # 10.01 s at 25 fps: the frame holding the end starts at 10.00 s, so the clip stops at its end.
    assert tsfiles.end_on_frame(10.01, 25) == pytest.approx(10.04 - tsfiles.FRAME_EPSILON)
    assert tsfiles.end_on_frame(10.0, 25) == pytest.approx(10.0 - tsfiles.FRAME_EPSILON)
    # Audio starting 20 ms before the video moves the output's time 0; an unknown rate cuts at the end.
    assert tsfiles.end_on_frame(10.0, 30, lead=0.02) == pytest.approx(10.02 - tsfiles.FRAME_EPSILON)
    assert tsfiles.end_on_frame(7.5, 0) == 7.5


def test_the_wait_for_the_window_s_end_is_the_recorder_s_published_limit(settings, redis_conn):
    # No recorder has reported yet: the limit its settings give (GN_STALL_SECONDS, 3 × seg_time + 5).
    assert build.end_wait(settings, redis_conn, "cam1") == 3 * settings.seg_time + 5
    # A recorder that measured a 4 s GOP published its watchdog's limit: the build waits exactly that.
    publish_health(
        Health(redis_conn, settings, "cam1", "testsrc", "copy"),
        time.time(), state="recording", keyframe_interval=4.0, stall_limit=11.0,
    )  # fmt: skip
    assert build.end_wait(settings, redis_conn, "cam1") == 11.0


# ---- real build jobs


def test_press_to_clip_covers_window_and_enqueues_render(make_settings, redis_conn: redis.Redis, tmp_path):
    s = _settings(make_settings)
    base = time.time() - 30
    segs = make_segments(s, redis_conn, "cam1", base, 20)
    p = PressRecord(camera="cam1", at=base + 12.3, pre=5, post=2)
    result = press_mod.submit(s, redis_conn, p)
    assert result.state == press_mod.SCHEDULED
    assert not journal.pending(s.journal_dir)
    assert any(pin.pin_id == p.press_id for pin in SegmentIndex(redis_conn, s.device_id, "cam1").pins())

    done = run_build_worker(s)
    assert done.returncode == 0, done.stderr
    job = fetch(redis_conn, job_id(s.device_id, p.press_id, "build"))
    assert job.get_status() == "finished", reason(job)
    clip = s.clips_dir / sidecar.clip_name(p)
    assert job.return_value() == str(clip)
    a, b = p.window

    data = json.loads(sidecar.path_for(clip).read_text())
    assert set(data) >= SIDECAR_FIELDS, SIDECAR_FIELDS - set(data)
    assert data["status"] == "queued" and data["camera"] == "cam1" and data["gaps"] == []
    assert data["sha256"] == sha256_file(clip) and data["size_bytes"] == clip.stat().st_size
    assert abs(parse_iso(data["press_at"]) - p.at) < 0.002
    first, last = parse_iso(data["first_segment"]["start"]), parse_iso(data["last_segment"]["end"])
    assert first <= a + 0.002 and last >= b - 0.002
    used = [x for x in segs if x.overlaps(a, b)]
    assert data["segments"] == len(used)
    # the clip is exactly the selected segments: pre+post within one segment at each end
    info = probe(clip)
    assert info.codec == "h264" and info.width == 320
    # The clip stops at the window's end (a copy can stop on any frame), not at the last segment's end.
    assert abs(info.duration_sec - (min(last, b) - first)) < 0.25
    assert abs(parse_iso(data["actual_window"]["end"]) - min(last, b)) < 0.002
    assert p.pre + p.post - 0.1 <= info.duration_sec <= p.pre + p.post + 2 * s.seg_time + 0.25
    assert decode_errors(clip) == ""
    # render job: deterministic id, one arg = the sidecar's name, on the render queue
    render_job = fetch(redis_conn, job_id(s.device_id, p.press_id, "render"))
    assert render_job.func_name == "worker.render.render_highlight"
    assert render_job.args == [sidecar.path_for(clip).name]
    assert render_job.id in queue(s, "render", redis_conn).job_ids
    # unpinned, counted, noted; no temp files (concat list, partial mp4) left
    assert not any(pin.pin_id == p.press_id for pin in SegmentIndex(redis_conn, s.device_id, "cam1").pins())
    assert redis_conn.hget(keys.counters(s.device_id), "clips_built") == b"1"
    assert redis_conn.hget(keys.highlight(s.device_id, p.press_id), "state") == b"built"
    # The segments came from one continuous run: joined by the concat protocol. The render's pieces
    # (progressive, the default) wait beside the clip in their temp directory; nothing else is left.
    # The whole window was on disk at the first look: joined in one go, not while it recorded.
    assert data["join"] == "protocol" and data["join_streamed"] is False
    piece_dir = pieces.pieces_dir(s, clip.stem)
    assert data["progressive"]["dir"] == piece_dir.name
    assert data["progressive"]["pieces"] == sorted(p.name for p in piece_dir.glob("*.ts"))
    expected = [clip.name, sidecar.path_for(clip).name, piece_dir.name]
    assert sorted(x.name for x in s.clips_dir.iterdir()) == sorted(expected)


def test_missing_segments_give_shorter_clip_with_gaps(make_settings, redis_conn: redis.Redis):
    s = _settings(make_settings)
    base = time.time() - 30
    segs = make_segments(s, redis_conn, "cam1", base, 20)
    p = PressRecord(camera="cam1", at=base + 12, pre=6, post=2)
    a, _b = p.window
    # a camera outage: three segments inside the window are gone (index and disk)
    lost = [x for x in segs if x.start >= a + 1.5][:3]
    SegmentIndex(redis_conn, s.device_id, "cam1").remove(*lost)
    for x in lost:
        (s.camera_buffer_dir("cam1") / x.name).unlink()
    assert press_mod.submit(s, redis_conn, p).state == press_mod.SCHEDULED
    assert run_build_worker(s).returncode == 0
    job = fetch(redis_conn, job_id(s.device_id, p.press_id, "build"))
    assert job.get_status() == "finished", reason(job)
    data = json.loads(sidecar.path_for(s.clips_dir / sidecar.clip_name(p)).read_text())
    assert len(data["gaps"]) == 1
    gap = data["gaps"][0]
    assert (
        abs(parse_iso(gap["start"]) - lost[0].start) < 0.01
        and abs(parse_iso(gap["end"]) - lost[-1].end) < 0.01
    )
    assert abs(gap["seconds"] - (lost[-1].end - lost[0].start)) < 0.01
    # the clip is what was recorded: the 3 s outage is missing from it, not padded
    assert data["meta"]["duration_sec"] < p.pre + p.post - 1
    # Two stretches: the join that follows the recording stopped at the gap; the demuxer joined them.
    assert data["join"] == "demuxer" and data["join_streamed"] is False
    assert sorted(x.name for x in s.clips_dir.iterdir() if x.name.startswith(".tmp-")) == []


@pytest.mark.parametrize("bad", ["zero-byte", "garbage"])
def test_a_bad_segment_in_the_window_is_a_gap_not_a_silently_short_clip(
    make_settings, redis_conn: redis.Redis, bad: str
):
    s = _settings(make_settings)
    base = time.time() - 30
    segs = make_segments(s, redis_conn, "cam1", base, 20)
    p = PressRecord(camera="cam1", at=base + 12, pre=6, post=2)
    a, b = p.window
    # Two segments in the middle of the window are damaged on disk (still indexed): a full SD card's
    # empty file, or bytes that are not MPEG-TS at all.
    damaged = [x for x in segs if x.start >= a + 2][:2]
    for x in damaged:
        path = s.camera_buffer_dir("cam1") / x.name
        path.write_bytes(b"" if bad == "zero-byte" else bytes(range(256)) * 200)
    assert press_mod.submit(s, redis_conn, p).state == press_mod.SCHEDULED
    assert run_build_worker(s).returncode == 0
    job = fetch(redis_conn, job_id(s.device_id, p.press_id, "build"))
    assert job.get_status() == "finished", reason(job)
    clip = s.clips_dir / sidecar.clip_name(p)
    data = json.loads(sidecar.path_for(clip).read_text())
    [gap] = data["gaps"]
    assert abs(parse_iso(gap["start"]) - damaged[0].start) < 0.01
    assert abs(parse_iso(gap["end"]) - damaged[-1].end) < 0.01
    # The sidecar's duration is the clip's real one, and it matches the segments that were joined.
    used = [x for x in segs if x.overlaps(a, b) and x not in damaged]
    assert data["segments"] == len(used)
    assert abs(data["meta"]["duration_sec"] - probe(clip).duration_sec) < 0.01
    # Covered: what the joined segments hold of the clip, which stops at t+post.
    assert abs(data["covered_seconds"] - sum(min(x.end, b) - x.start for x in used)) < 0.01
    assert abs(data["meta"]["duration_sec"] - data["covered_seconds"]) < 0.1
    assert "duration_short_by" not in data
    assert decode_errors(clip) == ""


def test_a_segment_name_that_is_not_a_plain_file_name_is_a_gap_never_opened(
    make_settings: Callable[..., Settings], redis_conn: redis.Redis
) -> None:
    s = _settings(make_settings)
    base = time.time() - 30
    segs = make_segments(s, redis_conn, "cam1", base, 20)
    p = PressRecord(camera="cam1", at=base + 12, pre=6, post=2)
    a, b = p.window
    # Three segments in the window are indexed under names that lead out of the buffer or hide in it
    # (a hostile or corrupt index). A good copy of each segment waits at that path: were it opened, the
    # clip would have no gap.
    buffer = s.camera_buffer_dir("cam1")
    victims = [x for x in segs if x.start >= a + 1][:5:2]
    hostile = [Segment(x.start, x.end, name) for x, name in zip(victims, HOSTILE_NAMES, strict=True)]
    for x, h in zip(victims, hostile, strict=True):
        (buffer / h.name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(buffer / x.name, buffer / h.name)
    index = SegmentIndex(redis_conn, s.device_id, "cam1")
    index.remove(*victims)
    index.add(*hostile)
    assert press_mod.submit(s, redis_conn, p).state == press_mod.SCHEDULED
    done = run_build_worker(s)
    assert done.returncode == 0, done.stderr
    job = fetch(redis_conn, job_id(s.device_id, p.press_id, "build"))
    assert job.get_status() == "finished", reason(job)
    clip = s.clips_dir / sidecar.clip_name(p)
    data = json.loads(sidecar.path_for(clip).read_text())
    # Each refused segment's time is a gap; the clip is the good segments around them.
    gaps = [(parse_iso(g["start"]), parse_iso(g["end"])) for g in data["gaps"]]
    assert len(gaps) == len(victims)
    for (start, end), x in zip(gaps, victims, strict=True):
        assert abs(start - x.start) < 0.01 and abs(end - x.end) < 0.01
    used = [x for x in segs if x.overlaps(a, b) and x not in victims]
    assert data["segments"] == len(used)
    assert abs(data["meta"]["duration_sec"] - probe(clip).duration_sec) < 0.01
    assert abs(data["covered_seconds"] - sum(min(x.end, b) - x.start for x in used)) < 0.01
    logged = [json.loads(line) for line in done.stderr.splitlines() if line.startswith("{")]
    refused = {x["segment"] for x in logged if x.get("event") == "segment_name_refused"}
    assert refused == set(HOSTILE_NAMES)


def test_ts_problem_names_what_is_wrong(tmp_path):
    empty, junk, short = tmp_path / "e.ts", tmp_path / "j.ts", tmp_path / "s.ts"
    empty.write_bytes(b"")
    junk.write_bytes(b"\x00" * 1000)
    short.write_bytes(b"\x47" * 10)
    assert tsfiles.ts_problem(empty) == "0 bytes"
    assert tsfiles.ts_problem(junk) == "not MPEG-TS"
    assert tsfiles.ts_problem(short) == "10 bytes"
    assert tsfiles.ts_problem(tmp_path / "gone.ts") == "missing"


def test_camera_that_recorded_nothing_is_a_failed_highlight(make_settings, redis_conn: redis.Redis):
    s = _settings(make_settings, max_attempts=1)
    base = time.time() - 60
    old = make_segments(s, redis_conn, "cam1", base, 5)  # the camera stopped 55 s ago...
    p = PressRecord(camera="cam1", at=time.time() - 10, pre=3, post=1)
    make_segments(s, redis_conn, "cam1", p.window[1] + 2, 3)  # ...and came back after the window
    # The trigger now refuses such a press at once; a press replayed from the journal is not checked
    # (the camera's state now says nothing about then), so the build job meets it.
    assert press_mod.hand_over(s, redis_conn, p).state == press_mod.SCHEDULED
    t0 = time.monotonic()
    run_build_worker(s)
    job = fetch(redis_conn, job_id(s.device_id, p.press_id, "build"))
    assert job.get_status() == "failed"
    assert "camera cam1 recorded nothing since" in reason(job)
    # The reason names what the camera recorded last before the window, not anything after it.
    assert iso(max(x.end for x in old)) in reason(job)
    state = redis_conn.hgetall(keys.highlight(s.device_id, p.press_id))
    assert state[b"state"] == b"failed" and b"recorded nothing since" in state[b"error"]
    assert redis_conn.hget(keys.counters(s.device_id), "builds_failed") == b"1"
    assert time.monotonic() - t0 < 60  # bounded wait, not a hang
    assert not (s.clips_dir / sidecar.clip_name(p)).exists()


def test_build_waits_for_the_segment_closing_the_window(make_settings, redis_conn: redis.Redis):
    s = _settings(make_settings)
    base = time.time() - 12
    segs = make_segments(s, redis_conn, "cam1", base, 12, index=False)
    index = SegmentIndex(redis_conn, s.device_id, "cam1")
    index.add(*segs[:-2])
    p = PressRecord(camera="cam1", at=segs[-1].end - 1.5, pre=4, post=1.5)

    def late() -> None:
        time.sleep(1.5)
        index.add(*segs[-2:])  # the recorder closes the last segments while the job waits

    threading.Thread(target=late, daemon=True).start()
    clip = build.Build(s, redis_conn, p).run()
    data = json.loads(sidecar.path_for(clip_path := s.clips_dir / sidecar.clip_name(p)).read_text())
    assert clip == str(clip_path)
    assert data["last_segment"]["name"] == segs[-1].name and data["gaps"] == []


def joined_by(monkeypatch: pytest.MonkeyPatch) -> list[list]:
    """What each concat demuxer list of the build held (files, or `concat:` URLs of the protocol)."""
    lists: list[list] = []
    real = build.concat_list

    def spy(entries: list) -> str:
        lists.append(entries)
        return real(entries)

    monkeypatch.setattr(build, "concat_list", spy)
    return lists


def test_a_window_across_a_recorder_restart_joins_each_run_byte_for_byte_and_the_runs_by_the_demuxer(
    make_settings, redis_conn: redis.Redis, monkeypatch: pytest.MonkeyPatch
) -> None:
    s = _settings(make_settings)
    base = time.time() - 30
    first = make_segments(s, redis_conn, "cam1", base, 8)
    # The recorder restarted: its new ffmpeg run tiles right after the old one, with another run id.
    second = make_segments(s, redis_conn, "cam1", first[-1].end, 8)
    p = PressRecord(camera="cam1", at=first[-1].end, pre=5, post=4)
    a, b = p.window
    lists = joined_by(monkeypatch)
    build.Build(s, redis_conn, p).run()
    data = json.loads(sidecar.path_for(clip := s.clips_dir / sidecar.clip_name(p)).read_text())
    assert data["join"] == "demuxer" and data["gaps"] == []
    directory = s.camera_buffer_dir("cam1")
    used = SegmentIndex(redis_conn, s.device_id, "cam1").covering(a, b)
    runs_used = [[x for x in used if x.run == run[0].run] for run in (first, second)]
    assert all(len(run) >= 3 for run in runs_used) and sum(map(len, runs_used)) == len(used)
    assert lists == [
        ["concat:" + "|".join(str((directory / x.name).resolve()) for x in run) for run in runs_used]
    ]
    assert abs(data["meta"]["duration_sec"] - data["covered_seconds"]) < 0.1
    assert decode_errors(clip) == ""


def test_segments_indexed_without_a_run_still_build_each_joined_by_the_demuxer(
    make_settings, redis_conn: redis.Redis, monkeypatch: pytest.MonkeyPatch
) -> None:
    # An index an older recorder wrote: members without a run. They parse (an unknown run); nothing
    # says they are one stream, so none is joined byte for byte with another.
    s = _settings(make_settings)
    base = time.time() - 30
    segs = make_segments(s, redis_conn, "cam1", base, 15, index=False)
    SegmentIndex(redis_conn, s.device_id, "cam1").add(*(Segment(x.start, x.end, x.name) for x in segs))
    [member] = redis_conn.zrange(keys.segments(s.device_id, "cam1"), 0, 0)
    assert b'"run"' not in member
    p = PressRecord(camera="cam1", at=base + 10, pre=5, post=2)
    a, b = p.window
    lists = joined_by(monkeypatch)
    build.Build(s, redis_conn, p).run()
    data = json.loads(sidecar.path_for(s.clips_dir / sidecar.clip_name(p)).read_text())
    used = SegmentIndex(redis_conn, s.device_id, "cam1").covering(a, b)
    assert data["join"] == "demuxer" and data["segments"] == len(used) and data["gaps"] == []
    assert lists == [[(s.camera_buffer_dir("cam1") / x.name) for x in used]]


HOSTILE = [
    ({"camera": "cam9", "at": 0, "pre": 4, "post": 2}, "unknown camera 'cam9'"),
    ({"camera": "../../etc", "at": 0, "pre": 4, "post": 2}, "is not a valid camera id"),
    ({"camera": "cam1/../../x", "at": 0, "pre": 4, "post": 2}, "is not a valid camera id"),
    ({"camera": "cam1", "at": 3600, "pre": 4, "post": 2}, "is in the future"),
    ({"camera": "cam1", "at": 0, "pre": 1e9, "post": 2}, "outside 0-900 s"),
    ({"camera": "cam1", "at": 0, "pre": -5, "post": 2}, "outside 0-900 s"),
    ({"camera": "cam1", "at": 0, "pre": 300, "post": 300}, "longer than the 60 s the buffer keeps"),
    ({"camera": "cam1", "at": "yesterday", "pre": 4, "post": 2}, "must be a number"),
    ({"camera": "cam1", "at": 0, "pre": 4, "post": 2, "path": "/etc/passwd"}, "unknown field"),
    ({"camera": "cam1", "at": 0, "pre": 4, "post": 2, "source": "../../x"}, "source"),
    ("/etc/passwd", "needs a press object"),
]


@pytest.mark.parametrize(("arg", "message"), HOSTILE, ids=[m for _, m in HOSTILE])
def test_hostile_job_arguments_fail_clearly_and_touch_nothing(
    make_settings, redis_conn, tmp_path, arg, message
):
    s = _settings(make_settings, max_attempts=3)  # retries configured, yet a bad argument fails at once
    base = time.time() - 20
    make_segments(s, redis_conn, "cam1", base, 15)
    if isinstance(arg, dict) and arg.get("at") == 0:
        arg = {**arg, "at": base + 10}
    elif isinstance(arg, dict) and arg.get("at") == 3600:
        arg = {**arg, "at": time.time() + 3600}
    before = files_under(tmp_path)
    q = queue(s, "build", redis_conn)
    build_function = STAGES[Stage.BUILD].function
    job = q.enqueue(build_function, arg, job_id=f"hostile-{s.device_id}", retry=retry_policy(s))
    assert run_build_worker(s).returncode == 0
    job = fetch(redis_conn, job.id)
    assert job.get_status() == "failed", job.get_status()
    assert message in reason(job), reason(job)
    assert job.retries_left in (0, None)
    after = files_under(tmp_path)
    assert {f for f in after - before if not f.startswith("data/")} == set()
    assert not (s.clips_dir.exists() and any(s.clips_dir.iterdir()))


def test_double_enqueue_of_the_same_press_is_a_noop(make_settings, redis_conn: redis.Redis, recording):
    s = _settings(make_settings)
    recording(s, redis_conn, "cam1")
    p = PressRecord(camera="cam1", at=time.time(), pre=5, post=2)
    assert press_mod.submit(s, redis_conn, p).state == press_mod.SCHEDULED
    assert press_mod.hand_over(s, redis_conn, p).state == press_mod.DUPLICATE
    job = fetch(redis_conn, job_id(s.device_id, p.press_id, "build"))
    assert job.args[0] == asdict(p)
    assert job.func_name == "worker.build.build_highlight"


def test_a_long_gop_clip_is_not_reported_short(make_settings, redis_conn: redis.Redis) -> None:
    # 4 s keyframe interval: the segment holding t+post runs on for up to 4 s past it, but the clip
    # stops at t+post, so what the segments cover is counted up to there too.
    s = _settings(make_settings, wm_progressive=False)
    base = time.time() - 40
    segs = make_segments(s, redis_conn, "cam1", base, 24, gop=4.0)
    p = PressRecord(camera="cam1", at=base + 13.0, pre=5, post=2)
    a, b = p.window
    last = next(x for x in segs if x.overlaps(a, b) and x.end > b)
    assert last.end - b > 1.0  # the case: the last segment goes on well past the window
    assert press_mod.submit(s, redis_conn, p).state == press_mod.SCHEDULED
    assert run_build_worker(s).returncode == 0
    data = json.loads(sidecar.path_for(s.clips_dir / sidecar.clip_name(p)).read_text())
    assert "duration_short_by" not in data, data
    assert abs(data["meta"]["duration_sec"] - data["covered_seconds"]) < 0.1
