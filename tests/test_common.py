"""common/: atomic files, redaction, the segment index and pins, the press journal."""

from __future__ import annotations

import json
import logging
import random
import time
from fractions import Fraction
from pathlib import Path

from common import journal
from common.ffmpeg import FFmpegError, frame_rate, probe, stream_fps
from common.fsutil import atomic_output, write_json_atomic
from common.log import JsonFormatter, redact, register_secret
from common.segments import Segment, SegmentIndex, runs
from common.timeutil import iso, parse_iso
from harness.media import corrupt, make_video
from recorder import probe as camera_probe
from tests.helpers import decode_errors
from worker.recipe import video_format


def test_atomic_json_leaves_no_temp(tmp_path: Path) -> None:
    target = tmp_path / "a" / "x.json"
    write_json_atomic(target, {"a": 1})
    write_json_atomic(target, {"a": 2})
    assert json.loads(target.read_text()) == {"a": 2}
    assert [p.name for p in target.parent.iterdir()] == ["x.json"]


def test_atomic_output_discards_on_error(tmp_path: Path) -> None:
    target = tmp_path / "out.mp4"
    try:
        with atomic_output(target) as tmp:
            tmp.write_bytes(b"half")
            raise RuntimeError("ffmpeg died")
    except RuntimeError:
        pass
    assert list(tmp_path.iterdir()) == []


def test_redact_masks_credentials_presigned_urls_and_secrets() -> None:
    register_secret("s3cr3t-device-key")
    text = (
        "rtsp://admin:hunter2@10.0.0.5:554/stream https://bucket.s3.amazonaws.com/a.mp4?X-Amz-Signature=abc "
        "key s3cr3t-device-key X-Signature: Zm9vYmFy"
    )
    out = redact(text)
    for secret in ("hunter2", "X-Amz-Signature=abc", "s3cr3t-device-key", "Zm9vYmFy"):
        assert secret not in out
    assert "rtsp://***@10.0.0.5:554/stream" in out


def test_json_log_line_has_fields() -> None:
    record = logging.LogRecord("x", logging.INFO, __file__, 1, "closed rtsp://u:p@h/s", None, None)
    record.gn = {"event": "segment_closed", "camera": "cam1"}
    line = json.loads(JsonFormatter().format(record))
    assert line["event"] == "segment_closed" and line["camera"] == "cam1" and line["level"] == "info"
    assert "u:p" not in line["msg"] and line["ts"].endswith("Z")


def test_iso_round_trip() -> None:
    t = 1755460200.123
    assert iso(t) == "2025-08-17T19:50:00.123Z"
    assert abs(parse_iso(iso(t)) - t) < 1e-3


def test_segment_member_is_the_json_it_always_was() -> None:
    # Members are matched byte for byte (ZREM, and an index written by an older recorder): the
    # hand-written JSON must be exactly what json.dumps(…, sort_keys=True) writes.
    rng = random.Random(7)
    names = ["seg_1764000000123_1764000001124.ts", 'odd "name"\\é.ts', "s0.ts"]
    for _ in range(2000):
        start = rng.choice([rng.uniform(0, 2e9), round(rng.uniform(0, 2e9), 3), float(rng.randrange(10**9))])
        seg = Segment(start, start + rng.uniform(0.001, 5), rng.choice(names))
        start, end = round(seg.start, 6), round(seg.end, 6)
        expected = {"name": seg.name, "start": start, "end": end}
        assert seg.member() == json.dumps(expected, sort_keys=True)
        assert Segment.from_member(seg.member()) == Segment(start, end, seg.name)


def test_a_segment_s_run_rides_in_its_member_and_an_older_member_is_an_unknown_run(redis_conn) -> None:
    seg = Segment(100.0, 101.0, "seg_100000_101000_7-1-ab.ts", run="7-1-ab")
    expected = {"end": 101.0, "name": seg.name, "run": "7-1-ab", "start": 100.0}
    assert seg.member() == json.dumps(expected, sort_keys=True)
    assert Segment.from_member(seg.member()) == seg
    # A member an older recorder wrote (no run): it parses, as an unknown run, and is the same member
    # again when written back (so retention can remove it).
    old_member = '{"end": 102.0, "name": "seg_101000_102000.ts", "start": 101.0}'
    old = Segment.from_member(old_member)
    assert (
        old == Segment(101.0, 102.0, "seg_101000_102000.ts") and old.run == "" and old.member() == old_member
    )
    idx = SegmentIndex(redis_conn, "dev-test-common-runs", "cam1")
    idx.replace_all([seg])
    redis_conn.zadd(idx.seg_key, {old_member: 101.0})
    assert idx.all() == [seg, old]
    idx.remove(old)
    assert idx.all() == [seg]


def test_runs_are_the_recorder_s_run_ids_without_a_segment_missing() -> None:
    a = [Segment(100.0 + i, 101.0 + i, f"a{i}", "1-1-x") for i in range(3)]
    b = [Segment(103.0 + i, 104.0 + i, f"b{i}", "1-2-x") for i in range(2)]  # restarted, tiling
    assert runs([*a, *b]) == [a, b]
    assert runs([a[0], a[2]]) == [[a[0]], [a[2]]]  # a segment of the run is missing in between
    unknown = [Segment(200.0 + i, 201.0 + i, f"u{i}") for i in range(2)]  # from an older recorder
    assert runs(unknown) == [[unknown[0]], [unknown[1]]]
    assert not b[0].continues(a[-1]) and a[1].continues(a[0]) and not unknown[1].continues(unknown[0])


def test_segment_index_covering_and_pins(redis_conn) -> None:
    idx = SegmentIndex(redis_conn, "dev-test-common", "cam1")
    idx.replace_all([])
    segs = [Segment(100.0 + i, 101.0 + i, f"s{i}.ts") for i in range(10)]
    idx.add(*segs)
    assert [s.name for s in idx.covering(103.5, 105.2)] == ["s3.ts", "s4.ts", "s5.ts"]
    assert idx.latest() == segs[-1]
    idx.remove(segs[0])
    assert len(idx.all()) == 9
    idx.pin("p1", 102, 104, ttl=60)
    idx.pin("p2", 0, 1, ttl=-1)  # already expired
    pins = idx.pins()
    assert [p.pin_id for p in pins] == ["p1"] and pins[0].covers(segs[3]) and not pins[0].covers(segs[8])
    idx.unpin("p1")
    assert idx.pins() == []


def test_journal_round_trip(tmp_path: Path) -> None:
    press = journal.PressRecord(camera="cam1", at=time.time(), pre=40, post=10, source="gpio")
    journal.write(tmp_path, press)
    assert journal.pending(tmp_path, "cam1") == [press] and journal.pending(tmp_path, "cam2") == []
    journal.remove(tmp_path, press)
    assert journal.pending(tmp_path) == []


def test_probe_and_decode(tmp_path: Path) -> None:
    clip = make_video(tmp_path / "c.mp4", seconds=2)
    info = probe(clip)
    assert (info.codec, info.width, info.height, info.fps) == ("h264", 320, 240, 30.0)
    assert 1.9 < info.duration_sec < 2.2
    assert decode_errors(clip) == ""
    assert decode_errors(corrupt(clip, tmp_path / "bad.mp4")) != ""
    try:
        probe(tmp_path / "missing.mp4")
    except FFmpegError as exc:
        assert "missing.mp4" in str(exc)
    else:
        raise AssertionError("probe of a missing file must fail")


def test_one_frame_rate_rule_for_every_reader(tmp_path: Path) -> None:
    """common.ffmpeg.frame_rate is the rule; the recorder's camera probe and the progressive render's
    segment reader give what it gives."""
    assert frame_rate({"r_frame_rate": "30000/1001", "avg_frame_rate": "0/0"}) == Fraction(30000, 1001)
    # a 90 kHz clock is not a camera's rate: the average then
    assert frame_rate({"r_frame_rate": "90000/1", "avg_frame_rate": "25/1"}) == 25
    assert frame_rate({"r_frame_rate": "0/0", "avg_frame_rate": "0/0"}) is None
    assert frame_rate({"r_frame_rate": "junk"}) is None and frame_rate({}) is None
    assert stream_fps({"r_frame_rate": "30000/1001"}) == 29.97 and stream_fps({}) == 0.0
    # An IDR sent in slices skews the average (25.49 for 25): the timestamps' rate wins, everywhere.
    sliced = {"codec_type": "video", "r_frame_rate": "25/1", "avg_frame_rate": "2549/100"}
    assert stream_fps(sliced) == 25.0
    assert camera_probe.parse({"streams": [sliced]}).fps == 25.0
    clip = make_video(tmp_path / "c.ts", seconds=1, fps=15)
    assert video_format(clip)[1] == "15/1" and probe(clip).fps == 15.0
