"""recorder/segmenter.py, keyframes.py, watchdog.py: naming, wall-clock anchoring, keyframes, backoff."""

from __future__ import annotations

import random
import socket
from pathlib import Path

from common.segments import Segment, runs
from harness.media import make_video
from recorder import keyframes
from recorder.indexer import SegmentIndexer
from recorder.presets import PART_PREFIX
from recorder.segmenter import (
    Anchor,
    back_project,
    clean_leftovers,
    make_segment,
    parse_list_line,
    scan,
    seg_name,
    segment_from_name,
)
from recorder.watchdog import Backoff, Watchdog, probe_target, reachable, stall_limit


def test_names_round_trip_to_the_millisecond() -> None:
    seg = make_segment(1755460200.1234, 1755460201.1236)
    assert seg.name == "seg_1755460200123_1755460201124.ts" == seg_name(seg.start, seg.end)
    assert segment_from_name(seg.name) == seg
    assert segment_from_name("part_1-1_000001.ts") is None
    assert segment_from_name("seg_1755460201124_1755460200123.ts") is None  # end before start


def test_a_name_keeps_the_segment_s_run_and_an_older_name_parses_as_an_unknown_run() -> None:
    seg = make_segment(1755460200.1234, 1755460201.1236, "812-3-a1b2c3")
    assert seg.name == "seg_1755460200123_1755460201124_812-3-a1b2c3.ts" and seg.run == "812-3-a1b2c3"
    assert segment_from_name(seg.name) == seg
    old = segment_from_name("seg_1755460200123_1755460201124.ts")  # written by an older recorder
    assert old is not None and old.run == "" and (old.start, old.end) == (seg.start, seg.end)
    assert segment_from_name("seg_1755460200123_1755460201124_a_b.ts") is None


def test_each_segment_carries_its_run_and_a_timestamp_jump_starts_another(tmp_path: Path) -> None:
    indexer = SegmentIndexer("cam1", "copy", 1.0, tmp_path)
    indexer.load()
    t0 = 1_700_000_000.0

    def close(run: str, n: int, stream_start: float, arrival: float) -> Segment:
        part = f"{PART_PREFIX}{run}_{n:06d}.ts"
        (tmp_path / part).write_bytes(b"\x47" * 188)
        [seg] = indexer.index([(run, arrival, f"{part},{stream_start:.6f},{stream_start + 1:.6f}\n")])
        return seg

    indexer.new_run("9-1-abc")
    a, b = close("9-1-abc", 1, 10.0, t0 + 1), close("9-1-abc", 2, 11.0, t0 + 2)
    # The camera's timestamps jump within the ffmpeg run: the index still tiles (the anchor re-anchors
    # at arrival, which is on time), but it is another stream: another run.
    jumped, after = close("9-1-abc", 3, 500.0, t0 + 3), close("9-1-abc", 4, 501.0, t0 + 4)
    assert jumped.start == b.end
    indexer.new_run("9-2-abc")  # a restart of ffmpeg
    restarted = close("9-2-abc", 1, 0.0, t0 + 6)
    runs_seen = [s.run for s in (a, b, jumped, after, restarted)]
    assert runs_seen == ["9-1-abc", "9-1-abc", "9-1-abc-1", "9-1-abc-1", "9-2-abc"]
    assert indexer.run == "9-2-abc"
    assert runs(indexer.segments) == [[a, b], [jumped, after], [restarted]]
    # The names keep the runs: a restarted recorder indexes the disk again as it was.
    assert scan(tmp_path) == indexer.segments


def test_parse_list_line() -> None:
    entry = parse_list_line("part_7-1_000003.ts,3.021333,4.021333\n")
    assert entry is not None and entry.name == "part_7-1_000003.ts"
    assert (entry.stream_start, entry.stream_end) == (3.021333, 4.021333)
    entry = parse_list_line("/abs/dir/part_7-1_000004.ts,1,2")
    assert entry is not None and entry.name == "part_7-1_000004.ts"
    assert parse_list_line("garbage") is None and parse_list_line("a,b,c") is None


def test_scan_and_leftovers(tmp_path: Path) -> None:
    a, b = make_segment(100.0, 101.0), make_segment(101.0, 102.0)
    for name in (b.name, a.name, "part_9-1_000001.ts", "part_9-2_000001.ts", ".tmp-3-x", "notes.txt"):
        (tmp_path / name).write_bytes(b"x")
    assert scan(tmp_path) == [a, b]
    assert clean_leftovers(tmp_path, "9-2") == ["part_9-2_000001.ts"]
    assert sorted(clean_leftovers(tmp_path)) == [".tmp-3-x", "part_9-1_000001.ts"]
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([a.name, b.name, "notes.txt"])


def run_camera(anchor: Anchor, n: int, rate: float, jitter: float = 0.0, t0: float = 1000.0) -> list:
    """A camera whose clock runs at `rate` × real time, cutting a segment every stream second."""
    rng = random.Random(7)
    out = []
    for i in range(n):
        s0, s1 = float(i), float(i + 1)
        arrival = t0 + s1 / rate + rng.uniform(0, jitter)
        out.append((*anchor.place(s0, s1, arrival), arrival))
    return out


def test_anchor_tiles_and_tracks_a_slow_clock_for_a_day() -> None:
    # 1 % slow for 86400 segments: a once-anchored index would be 14 minutes off by the end.
    placed = run_camera(Anchor(), 86_400, rate=0.99)
    assert all(placed[i][0] == placed[i - 1][1] for i in range(1, len(placed)))
    assert max(abs(end - arrival) for _, end, arrival in placed) < 0.05


def test_anchor_fast_clock_and_arrival_jitter() -> None:
    placed = run_camera(Anchor(), 3600, rate=1.01, jitter=0.2)
    assert all(placed[i][0] == placed[i - 1][1] for i in range(1, len(placed)))
    assert max(abs(end - arrival) for _, end, arrival in placed) < 0.5


def test_anchor_reanchors_after_an_outage_with_an_honest_gap() -> None:
    anchor = Anchor()
    a = anchor.place(0, 1, 1001.0)
    b = anchor.place(1, 2, 1002.0)
    # Stream continues (same timestamps) but data arrives 20 s late: a real outage.
    c = anchor.place(2, 3, 1023.0)
    assert a == (1000.0, 1001.0) and b[0] == a[1]
    assert c == (1022.0, 1023.0)
    # A new ffmpeg run (timestamps restart) is re-anchored too, never overlapping the previous segment.
    anchor.reset()
    d = anchor.place(0, 1, 1023.5)
    assert d[0] == 1023.0 and d[1] > d[0]


def test_a_part_closed_by_stopping_ffmpeg_is_dated_by_its_stream_not_its_arrival() -> None:
    # A stall: the camera's frames stopped 0.5 s into a part; the watchdog stopped ffmpeg 11 s later,
    # which closed the part then. Read late, a part is re-anchored at its arrival; stopped, it was not late.
    late, stopped = Anchor(), Anchor()
    for anchor in (late, stopped):
        assert [anchor.place(i, i + 1, 1001.0 + i) for i in range(2)] == [(1000.0, 1001.0), (1001.0, 1002.0)]
    assert late.place(2, 2.5, 1013.5) == (1013.0, 1013.5)
    assert stopped.place(2, 2.5, 1013.5, flushed=True) == (1002.0, 1002.5)


def test_anchor_slews_back_after_a_late_read() -> None:
    anchor = Anchor()
    placed = [anchor.place(i, i + 1, 1001.0 + i) for i in range(5)]
    late = anchor.place(5, 6, 1006.0 + 1.5)  # read 1.5 s late (busy box): slewed, not a gap
    assert late[0] == placed[-1][1]
    after = [anchor.place(i, i + 1, 1001.0 + i) for i in range(6, 30)]
    assert abs(after[-1][1] - 1030.0) < 0.05


def test_keyframe_interval_from_probe_and_durations(tmp_path: Path) -> None:
    assert keyframes.interval_from([1.0, 1.5, 2.0, 2.5], []) == 0.5
    assert keyframes.interval_from([3.4], [3.0, 3.0, 2.9]) == 3.0
    assert keyframes.interval_from([], []) is None
    assert keyframes.too_long(2.0, 1.0) and not keyframes.too_long(1.05, 1.0)
    clip = make_video(tmp_path / "g.ts", seconds=3, fps=15, gop=7, audio=False)
    measured = keyframes.measure([clip], [3.0])
    assert measured is not None and abs(measured - 7 / 15) < 0.01


def test_keyframes_sent_in_slices_count_once() -> None:
    # An IDR in slices: two key packets 11 µs apart (one RTP clock tick) every 2 s.
    split = [t for k in range(5) for t in (2.0 * k + 0.5, 2.0 * k + 0.500011)]
    assert keyframes.distinct(split) == [0.5, 2.5, 4.5, 6.5, 8.5]
    assert keyframes.interval_from(split, []) == 2.0
    # The segment muxer cut between the slices too: one-frame slivers, then the GOP's remainder.
    assert keyframes.interval_from([], [0.04, 2.0, 0.04, 2.0, 0.04, 2.0]) == 2.04
    assert keyframes.whole_segments([2.1, 0.04, 2.0, 0.04]) == [2.1, 2.04]
    # An all-intra 60 fps camera still has a keyframe every frame.
    assert keyframes.interval_from([k / 60 for k in range(10)], []) == round(1 / 60, 3)


def test_backoff_and_watchdog() -> None:
    backoff = Backoff(first=0.5, cap=4.0)
    assert [backoff.next_delay() for _ in range(6)] == [0.5, 1.0, 2.0, 4.0, 4.0, 4.0]
    backoff.reset()
    assert backoff.next_delay() == 0.5
    # A camera that keeps refusing all night: the delay stays at the cap (no float overflow at 1024).
    assert [backoff.next_delay() for _ in range(2000)][2:] == [4.0] * 1998
    dog = Watchdog(limit=8.0)
    assert not dog.stalled(100.0)
    dog.started(100.0)
    assert not dog.stalled(108.0) and dog.stalled(108.1)
    dog.progress(108.0)
    assert not dog.stalled(110.0)
    assert stall_limit(8.0, 1.0, 4.0) == 11.0 and stall_limit(8.0, 1.0, None) == 8.0


def test_segment_type_is_the_common_one() -> None:
    assert isinstance(make_segment(1.0, 2.0), Segment)


def test_a_burst_is_dated_by_its_last_arrival() -> None:
    # Five segments buffered while ffmpeg probed its input arrive within 10 ms.
    closes = [(float(i + 1), 1005.0 + i * 0.002) for i in range(5)]
    assert back_project(closes) == [1001.008, 1002.008, 1003.008, 1004.008, 1005.008]
    anchor = Anchor()
    placed = [anchor.place(i, i + 1, a) for i, a in enumerate(back_project(closes))]
    assert placed[0] == (1000.008, 1001.008) and placed[-1][1] == 1005.008
    # Normal spacing is left alone.
    assert back_project([(1.0, 10.0), (2.0, 11.0)]) == [10.0, 11.0]


def test_anchor_follows_a_system_clock_stepped_back() -> None:
    anchor = Anchor()
    anchor.place(0, 1, 5000.0)
    assert anchor.place(1, 2, 1001.0) == (1000.0, 1001.0)  # NTP moved the clock back ~67 minutes
    assert anchor.place(2, 3, 1002.0) == (1001.0, 1002.0)


def test_probe_target_of_network_sources() -> None:
    assert probe_target("rtsp://u:p@192.168.1.64/Streaming/Channels/101") == ("192.168.1.64", 554)
    assert probe_target("rtsp://cam.local:8554/live") == ("cam.local", 8554)
    assert probe_target("http://10.0.0.5/video.mjpg") == ("10.0.0.5", 80)
    assert probe_target("tcp://127.0.0.1:9000") == ("127.0.0.1", 9000)
    for source in (
        "udp://239.0.0.1:1234",
        "tcp://127.0.0.1",
        "/dev/video0",
        "testsrc",
        "clip.mp4",
        "rtsp://h:x/",
    ):
        assert probe_target(source) is None, source


def test_reachable_is_a_real_tcp_connect() -> None:
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        port = listener.getsockname()[1]
        assert reachable(("127.0.0.1", port)) is None
    why = reachable(("127.0.0.1", port))
    assert why is not None and "refused" in why.lower()


def test_indexer_keeps_segments_in_order_and_their_total_as_they_come_and_go(tmp_path: Path) -> None:
    # Retention reads only the oldest segments and health publishes the total every second: both rely
    # on what the indexer keeps up to date itself, checked here against the list it holds.
    t0 = 1_700_000_000.0
    for i in range(5):
        (tmp_path / seg_name(t0 + i, t0 + i + 1)).write_bytes(b"\x47" * 188 * (i + 1))
    indexer = SegmentIndexer("cam1", "copy", 1.0, tmp_path)
    indexer.load()
    indexer.new_run("r1")

    def close(n: int, arrival: float) -> None:
        part = f"{PART_PREFIX}r1_{n:06d}.ts"
        (tmp_path / part).write_bytes(b"\x47" * 188)
        indexer.index([("r1", arrival, f"{part},{n}.000000,{n}.500000\n")])

    def total() -> float:
        return round(sum(s.duration for s in indexer.segments), 3)

    close(1, t0 + 6)  # after the last one on disk
    close(5, t0 - 300)  # the system clock was set back 5 minutes: it goes first
    assert indexer.segments == sorted(indexer.segments) and len(indexer.segments) == 7
    assert indexer.segments[0].end == t0 - 300 and indexer.buffered() == total() == 6.0
    assert indexer.sizes == {s.name: (tmp_path / s.name).stat().st_size for s in indexer.segments}
    indexer.forget(indexer.segments[:2])  # the oldest
    indexer.forget([indexer.segments[2], indexer.segments[2]])  # one in the middle, named twice
    indexer.forget([Segment(t0 - 900, t0 - 899, seg_name(t0 - 900, t0 - 899))])  # one it never had
    assert len(indexer.segments) == 4 and indexer.buffered() == total() == 3.5
    assert sorted(indexer.sizes) == sorted(s.name for s in indexer.segments)
