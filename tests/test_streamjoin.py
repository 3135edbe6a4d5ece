"""The join written while its files arrive (worker.streamjoin), against the one-shot join; real ffmpeg.

It must give the same packets as the concat protocol with `+faststart` (the index at the front), and
when its ffmpeg dies or its index outgrows the room kept for it, fail clearly and leave no file.
"""

from __future__ import annotations

import os
import signal
import subprocess
from pathlib import Path

import pytest
import redis

from common.ffmpeg import FFmpegError, base_args, mp4_copy_args, run
from common.fsutil import TMP_MARK
from common.settings import Settings
from tests.build_helpers import make_segments
from tests.helpers import wait_for
from worker import pieces, streamjoin


def packets(path: Path) -> list[tuple[int, int, int, int, str]]:
    """Every packet's stream, timestamps (in its stream's ticks), size and flags: what a copy must keep."""
    args = ["ffprobe", "-v", "error", "-show_entries", "packet=stream_index,pts,dts,size,flags"]
    out = subprocess.run([*args, "-of", "csv=p=0", str(path)], capture_output=True, text=True, check=True)
    rows = [line.split(",") for line in out.stdout.split()]
    return [(int(i), int(pts), int(dts), int(size), flags) for i, pts, dts, size, flags in rows]


def same_packets(a: Path, b: Path) -> None:
    """The same packets in the same order, the same video timestamps. The audio frames that share the
    first audio PES packet (it carries one timestamp for all) may sit up to a fifth of a millisecond
    (9 ticks of 1/44100 s) off: from a pipe, ffmpeg's MPEG-TS reader spaces them before it knows the
    sample rate. Audio and video agree within 0.05 s is the bar; this is 250 times finer."""
    pa, pb = packets(a), packets(b)
    assert len(pa) == len(pb)
    for x, y in zip(pa, pb, strict=True):
        assert (x[0], x[3], x[4]) == (y[0], y[3], y[4])
        tolerance = 9 if x[0] == 1 else 0
        assert abs(x[1] - y[1]) <= tolerance and abs(x[2] - y[2]) <= tolerance, (x, y)


@pytest.fixture
def files(make_settings, redis_conn: redis.Redis) -> tuple[Settings, list[Path]]:
    s = make_settings(seg_time=1)
    segments = make_segments(s, redis_conn, "cam1", 1000.0, 12, index=False)
    return s, [s.camera_buffer_dir("cam1") / x.name for x in segments]


def test_a_streamed_join_is_the_one_shot_join_with_its_index_at_the_front(files, tmp_path: Path) -> None:
    _s, paths = files
    end = 10.4
    one_shot = tmp_path / "one-shot.mp4"
    concat = "concat:" + "|".join(str(p) for p in paths)
    run([*base_args(), "-i", concat, "-t", f"{end:.3f}", *mp4_copy_args(one_shot)], 60)

    streamed = tmp_path / "streamed.mp4"
    join = streamjoin.StreamJoin(streamed, end, 12, 15)
    join.extend(paths[:5])  # what exists at the press …
    join.extend(paths[:9])  # … then what closes during the post-roll
    assert join.holds(paths[:9]) and not streamed.exists()
    join.extend(paths)
    assert join.finish(30) == streamed
    same_packets(streamed, one_shot)
    layout = streamjoin.top_boxes(streamed)
    assert layout[:2] == ["ftyp", "moov"] and layout[-1] == "mdat"
    assert not list(tmp_path.glob(f"{TMP_MARK}*"))


def test_a_join_whose_ffmpeg_is_killed_fails_and_leaves_nothing(files, tmp_path: Path) -> None:
    _s, paths = files
    out = tmp_path / "clip.mp4"
    join = streamjoin.StreamJoin(out, None, 12, 15)
    join.extend(paths[:8])  # more than ffmpeg reads before it writes (5 s of input)
    wait_for("ffmpeg to write", lambda: join.tmp.is_file() and join.tmp.stat().st_size > 0, 10)
    os.kill(join.proc.pid, signal.SIGKILL)
    join.proc.wait(10)
    join.extend(paths)  # feeding a dead ffmpeg does not raise …
    with pytest.raises(FFmpegError, match="exit -9"):
        join.finish(30)  # … its end does
    assert not out.exists() and not join.tmp.exists()


def test_an_index_that_outgrows_its_room_fails_the_join(
    files, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _s, paths = files
    monkeypatch.setattr(streamjoin, "INDEX_BYTES_BASE", 512)
    monkeypatch.setattr(streamjoin, "INDEX_BYTES_PER_SAMPLE", 0)
    out = tmp_path / "clip.mp4"
    join = streamjoin.StreamJoin(out, None, 12, 15)
    join.extend(paths)
    with pytest.raises(FFmpegError, match="join failed"):
        join.finish(30)
    assert not out.exists() and not join.tmp.exists()


def test_a_join_whose_files_change_stops(files, tmp_path: Path) -> None:
    _s, paths = files
    out = tmp_path / "clip.mp4"
    join = streamjoin.StreamJoin(out, None, 12, 15)
    join.extend(paths[:4])
    join.extend(paths[1:6])  # the window's first segment went: this join cannot make the clip
    assert not join.alive and join.proc.poll() is not None
    with pytest.raises(FFmpegError, match="changed"):
        join.finish(30)
    assert not out.exists() and not join.tmp.exists()


def test_room_for_the_index_grows_with_the_window_and_the_frame_rate() -> None:
    assert streamjoin.index_room(300, 30) > streamjoin.index_room(50, 30) > streamjoin.index_room(50, 1)
    # What ffmpeg really wrote for 55 s of 720p30 + AAC 48 kHz: a 49 KB index.
    assert streamjoin.index_room(55, 30) > 2 * 49_449


def test_two_frames_a_hair_apart_are_found_inside_a_piece_or_where_pieces_meet() -> None:
    frame = 1 / 30

    def piece(*times: float, min_step: float | None = frame) -> dict:
        return {"edges": list(times), "min_step": min_step}

    even = [piece(10.0, 10.033, 17.933, 17.966), piece(18.0, 18.033, 25.966), piece(26.0, 26.033)]
    assert pieces.crowded_frames(even, frame) is None
    # One frame of a sliced IDR alone at a piece's end; the same frame time at both sides of a join.
    assert pieces.crowded_frames([piece(10.0, 17.999), piece(18.0, 18.033)], frame) == pytest.approx(0.001)
    assert pieces.crowded_frames([piece(10.0, 18.0), piece(18.0, 18.033)], frame) == 0.0
    # Inside a piece: its smallest step says so.
    assert pieces.crowded_frames([piece(10.0, 17.966, min_step=1.1e-5)], frame) == pytest.approx(1.1e-5)
    wrap = 2**33 / 90000  # across the 33-bit wrap of the timestamps
    assert pieces.crowded_frames([piece(wrap - 2 * frame, wrap - frame), piece(0.0, frame)], frame) is None
    assert pieces.crowded_frames([piece(0.0, min_step=None)], frame) is None
