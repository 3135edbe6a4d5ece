"""The ahead encoder: its cache (one recipe, recent batches only), its stop, and its off switch.

How its pieces join into a highlight is tested in test_progressive.py, against the single pass.
"""

from __future__ import annotations

import json
import signal
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest
import redis

from common import keys
from common.segments import Segment, SegmentIndex
from common.settings import Settings
from common.watermark import Watermark
from harness.media import make_logo
from harness.recorder_helpers import children_ffmpeg
from harness.redis_server import RedisServer
from tests.build_helpers import make_segments
from tests.helpers import run_gravanois, start_gravanois, wait_for
from worker import ahead, aheadcache, progressive

# How long a SIGTERM'd `gravanois ahead` may take: supervisord waits 10 s (stopwaitsecs) before its
# SIGKILL. At nice 10 on a loaded machine the stop's ~0.1 CPU-s takes 2-4 s of wall time here.
STOP_SECONDS = 8


def _settings(make_settings: Callable[..., Settings], tmp_path: Path, **kw: object) -> Settings:
    # The ahead path forced: with a 12 s window the render budget would find the progressive render
    # as quick, and leave the cameras to it (tests/test_budget_keeper.py).
    base: dict[str, object] = {"pre_seconds": 10, "post_seconds": 2, "seg_time": 1, "buffer_seconds": 60}
    base.update(cooldown_seconds=0, render_path="ahead" if kw.get("wm_ahead", True) else "auto")
    logo = make_logo(tmp_path / "logo.png", size="120x60", color="red")
    return make_settings(**{**base, "wm_logo": logo, **kw})


def recent(s: Settings, conn: redis.Redis, *runs: int) -> list[list[Segment]]:
    """Recording runs of these many seconds each, one after the other, the last ending now; indexed
    (a restart of the recorder's ffmpeg between runs: the next run's timestamps start again)."""
    made, start = [], time.time()  # names (from the start time, in ms) differ from call to call
    for seconds in runs:
        made.append(make_segments(s, conn, "cam1", start, seconds, index=False))
        start = made[-1][-1].end
    shift = time.time() - start  # times as if recorded up to this moment, however long ffmpeg took
    out = [[Segment(x.start + shift, x.end + shift, x.name, x.run) for x in run] for run in made]
    SegmentIndex(conn, s.device_id, "cam1").add(*(x for run in out for x in run))
    return out


def batched_24s(
    make_settings: Callable[..., Settings], redis_conn: redis.Redis, tmp_path: Path
) -> tuple[Settings, list[Segment]]:
    """A camera's last 24 s recorded and the ahead encoder's batches of them cut (a 20 s pre-roll)."""
    s = _settings(make_settings, tmp_path, pre_seconds=20)
    [segments] = recent(s, redis_conn, 24)
    ahead.CameraAhead(s, redis_conn, "cam1", Watermark.from_settings(s)).tick()
    return s, segments


def records(s: Settings) -> list[Path]:
    """The cache's batch records, every recipe."""
    return sorted(aheadcache.ahead_dir(s, "cam1").glob("*/*.json"))


def test_batches_hold_the_newest_pre_roll_of_one_run_and_one_recipe(
    make_settings: Callable[..., Settings], redis_conn: redis.Redis, tmp_path: Path
) -> None:
    s = _settings(make_settings, tmp_path, pre_seconds=20)
    [segments] = recent(s, redis_conn, 40)
    t = time.time()
    cam = ahead.CameraAhead(s, redis_conn, "cam1", Watermark.from_settings(s))
    cam.tick()
    # 20 s of pre-roll: four or five full batches of 4 s (where the pre-roll begins against the segments'
    # boundaries depends on the moment); the rest waits for more segments.
    found = [json.loads(r.read_text()) for r in records(s)]
    assert s.pre_seconds // ahead.BATCH_SECONDS - 1 <= len(found) <= s.pre_seconds // ahead.BATCH_SECONDS, (
        found
    )
    names = [seg.name for seg in segments]
    first = names.index(found[0]["segments"][0])
    assert segments[first].start >= t - s.pre_seconds - 1.5  # nothing older than the pre-roll
    for batch in found:
        i = names.index(batch["segments"][0])
        assert batch["segments"] == names[i : i + len(batch["segments"])]  # consecutive
        held = sum(seg.duration for seg in segments[i : i + len(batch["segments"])])
        assert ahead.BATCH_SECONDS - 0.01 <= held < ahead.BATCH_SECONDS + 1.5
        assert (records(s)[0].parent / batch["file"]).stat().st_size > 0
    assert found[1]["segments"][0] == names[first + len(found[0]["segments"])]  # one after the other

    # A new logo is a new recipe: its batches go to a new folder; the old folder stays for the builds
    # started before the change, until its batches are too old for any.
    old_dir = records(s)[0].parent
    make_logo(tmp_path / "logo.png", size="120x60", color="blue")
    fresh = ahead.CameraAhead(s, redis_conn, "cam1", Watermark.from_settings(s))
    fresh.tick()
    new_dirs = {r.parent for r in records(s)} - {old_dir}
    assert len(new_dirs) == 1 and old_dir.exists()

    # Batches older than pre + post + a margin are dropped, and the other recipe's folder with them.
    fresh.prune(time.time() + s.pre_seconds + s.post_seconds + ahead.KEEP_EXTRA_SECONDS + 60)
    assert records(s) == [] and list(new_dirs.pop().iterdir()) == [] and not old_dir.exists()


def test_a_new_recording_run_starts_a_new_batch(
    make_settings: Callable[..., Settings], redis_conn: redis.Redis, tmp_path: Path
) -> None:
    s = _settings(make_settings, tmp_path, pre_seconds=20)
    # Two ffmpeg runs, the second tiling right after the first (a restart): its timestamps start again.
    first, second = recent(s, redis_conn, 5, 12)
    cam = ahead.CameraAhead(s, redis_conn, "cam1", Watermark.from_settings(s))
    cam.tick()
    batches = [json.loads(r.read_text())["segments"] for r in records(s)]
    runs = [{seg.name for seg in first}, {seg.name for seg in second}]
    assert batches, "no batch"
    assert all(set(b) <= runs[0] or set(b) <= runs[1] for b in batches), batches
    assert any(set(b) <= runs[0] for b in batches)  # the first run's short stretch, closed by the new run


def test_ahead_stops_at_sigterm_without_leftovers(
    make_settings: Callable[..., Settings], redis_conn: redis.Redis, tmp_path: Path
) -> None:
    s = _settings(make_settings, tmp_path, pre_seconds=40, buffer_seconds=120)
    recent(s, redis_conn, 41)
    proc = start_gravanois(s, "ahead")
    try:
        # Stop it while it works through its first batches.
        wait_for("an ffmpeg encoding a batch", lambda: children_ffmpeg(proc.pid), timeout=30, every=0.02)
        proc.send_signal(signal.SIGTERM)
        # A signal that lands during an ffmpeg's fork (Python swallows the handler's exception there)
        # once made it finish the whole backlog first (30 s).
        assert proc.wait(STOP_SECONDS) == 0
    finally:
        proc.kill()
    assert children_ffmpeg(proc.pid) == []
    leftovers = [p for p in aheadcache.ahead_dir(s, "cam1").rglob("*") if p.name.startswith(".tmp")]
    assert leftovers == []
    for record in records(s):  # every record has its piece
        assert (record.parent / json.loads(record.read_text())["file"]).is_file()


def test_off_it_deletes_its_cache_and_waits(
    make_settings: Callable[..., Settings], redis_conn: redis.Redis, tmp_path: Path
) -> None:
    s = _settings(make_settings, tmp_path, wm_ahead=False)
    stale = aheadcache.ahead_dir(s, "cam1") / "0123456789abcdef"
    stale.mkdir(parents=True)
    (stale / "x.ts").write_bytes(b"old")
    proc = start_gravanois(s, "ahead")
    try:
        wait_for("the cache removed", lambda: not stale.parent.exists(), timeout=20)
        time.sleep(1.0)
        assert proc.poll() is None  # it stays up (supervisord would restart it) but does nothing
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(5) == 0
    finally:
        proc.kill()


def test_status_shows_whether_the_ahead_encoder_runs(
    make_settings: Callable[..., Settings], redis_conn: redis.Redis, tmp_path: Path
) -> None:
    s = _settings(make_settings, tmp_path, pre_seconds=20)

    def ahead_status() -> dict:
        out = run_gravanois(s, "status", "--json")
        status: dict = json.loads(out.stdout)["ahead"]
        return status

    assert ahead_status()["running"] is False
    assert "ahead encoder: NOT RUNNING" in run_gravanois(s, "status").stdout
    recent(s, redis_conn, 25)
    proc = start_gravanois(s, "ahead")
    try:
        seen = wait_for(
            "the ahead encoder's heartbeat with a cached batch",
            lambda: (a := ahead_status())["running"] and a["cameras"]["cam1"]["cached_age"] is not None and a,
            timeout=30,
        )
        assert 0 <= seen["cameras"]["cam1"]["cached_age"] < 20 and seen["cameras"]["cam1"]["behind"] is False
        assert "ahead encoder: running: cam1 cached until" in run_gravanois(s, "status").stdout
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(STOP_SECONDS) == 0
    finally:
        proc.kill()
    assert ahead_status()["running"] is False  # a clean stop takes the heartbeat away at once
    off = _settings(make_settings, tmp_path, wm_ahead=False)
    assert "ahead encoder: off (GN_WM_AHEAD=false)" in run_gravanois(off, "status").stdout


def test_ahead_waits_out_a_redis_restart(
    make_settings: Callable[..., Settings], private_redis: RedisServer, tmp_path: Path
) -> None:
    s = _settings(make_settings, tmp_path, redis_url=private_redis.url)
    conn = private_redis.client()
    proc = start_gravanois(s, "ahead")
    try:
        wait_for("the heartbeat", lambda: conn.exists(keys.ahead(s.device_id)), timeout=30)
        private_redis.stop()
        time.sleep(3.0)  # what a venue lives through: Redis gone for a while
        assert proc.poll() is None, "the ahead encoder died with Redis"
        private_redis.start()
        # Segments recorded after the restart: the encoder finds them and caches a batch, without
        # anyone restarting it.
        recent(s, conn, 12)
        wait_for("a batch after Redis came back", lambda: records(s), timeout=30)
        wait_for("the heartbeat again", lambda: conn.exists(keys.ahead(s.device_id)), timeout=15)
    finally:
        proc.terminate()
        proc.wait(10)


def test_a_build_leaves_the_newest_segments_to_a_running_ahead_encoder(
    make_settings: Callable[..., Settings], redis_conn: redis.Redis, tmp_path: Path
) -> None:
    s, segments = batched_24s(make_settings, redis_conn, tmp_path)
    last = records(s)[-1]  # taken away: as if its segments had closed after the newest batch
    after = json.loads(last.read_text())["segments"]
    (last.parent / json.loads(last.read_text())["file"]).unlink()
    last.unlink()
    batched = [json.loads(r.read_text())["segments"] for r in records(s)]
    names = [seg.name for seg in segments]
    # From a segment before the first batch to one before the end: after the newest batch comes less than
    # a batch, which the ahead encoder will only cut when later segments close.
    window = segments[names.index(batched[0][0]) - 1 : -1]
    after = after[:-1]
    held = lambda enc: [n for piece in enc.pieces for n in piece["segments"]]  # noqa: E731

    deferring = progressive.Encoder(s, "h1", "cam1", window[-1].end, defer=True)
    deferring.advance(window)  # while the post-roll records: the newest segments are the encoder's
    assert held(deferring) == [seg.name for seg in window if seg.name not in after]
    assert [p["from"] for p in deferring.pieces] == ["build"] + ["ahead"] * len(batched)
    deferring.advance(window, complete=True)  # the window is complete: the build encodes the rest
    assert held(deferring) == [seg.name for seg in window]
    assert deferring.pieces[-1] == {**deferring.pieces[-1], "from": "build", "segments": after}
    deferring.close()

    eager = progressive.Encoder(s, "h2", "cam1", window[-1].end)  # no ahead encoder keeping up
    eager.advance(window)
    assert held(eager) == [seg.name for seg in window]
    eager.close()


def test_a_build_whose_recipe_has_no_batch_yet_leaves_nothing_to_the_ahead_encoder(
    make_settings: Callable[..., Settings], redis_conn: redis.Redis, tmp_path: Path
) -> None:
    # The budget changed the camera's size a moment ago: the ahead encoder's new recipe has no batch yet,
    # and where it will start is not known. The build encodes what it has (it used to leave every
    # segment to the ahead encoder, make no piece and fail on the empty list: a retry, 17 s late).
    s, segments = batched_24s(make_settings, redis_conn, tmp_path)
    aside = tmp_path / "aside"
    aside.mkdir()
    for record in records(s):
        move_batch(record, aside)
    window = segments[-21:-1]
    fresh = progressive.Encoder(s, "h1", "cam1", window[-1].end, defer=True)
    fresh.advance(window)
    assert [n for piece in fresh.pieces for n in piece["segments"]] == [seg.name for seg in window]
    assert {p["from"] for p in fresh.pieces} == {"build"} and not fresh.broken
    fresh.close()


def move_batch(record: Path, to: Path) -> Path:
    """Move a cached batch (its piece, then its record, which makes it seen) into the folder `to`."""
    piece = json.loads(record.read_text())["file"]
    (record.parent / piece).rename(to / piece)
    return record.rename(to / record.name)


def test_a_complete_window_waits_for_an_ahead_encoder_that_is_behind_but_progressing(
    make_settings: Callable[..., Settings],
    redis_conn: redis.Redis,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    s, segments = batched_24s(make_settings, redis_conn, tmp_path)
    # The last two batches taken aside: as if the ahead encoder were two batches behind the window's end,
    # which is a segment before the last batch's.
    cache, aside = records(s)[0].parent, tmp_path / "aside"
    aside.mkdir()
    late = [move_batch(record, aside) for record in records(s)[-2:]]
    tail = json.loads(late[-1].read_text())["segments"][:-1]
    names = [seg.name for seg in segments]
    window = segments[names.index(json.loads(records(s)[0].read_text())["segments"][0]) : -1]
    held = lambda enc: [n for piece in enc.pieces for n in piece["segments"]]  # noqa: E731

    # The ahead encoder progresses: the first of the two batches comes back a moment later (its encode
    # finished). The build waits for it instead of encoding it too, then encodes only the rest itself
    # (less than a batch: the ahead encoder cuts its next batch only when a later segment closes).
    back = threading.Timer(1.5, lambda: move_batch(late[0], cache))
    back.start()
    started = time.monotonic()
    waiting = progressive.Encoder(s, "h1", "cam1", window[-1].end, defer=True)
    waiting.advance(window, complete=True)
    back.join()
    assert time.monotonic() - started >= 1.5
    assert held(waiting) == [seg.name for seg in window]
    assert [p["from"] for p in waiting.pieces][-2:] == ["ahead", "build"], waiting.pieces
    assert waiting.pieces[-1]["segments"] == tail
    waiting.close()

    # It stopped (no new batch for AHEAD_STALL_SECONDS, shortened here): the build encodes the rest itself.
    monkeypatch.setattr(progressive, "AHEAD_STALL_SECONDS", 1.0)
    move_batch(cache / late[0].name, aside)
    started = time.monotonic()
    alone = progressive.Encoder(s, "h2", "cam1", window[-1].end, defer=True)
    alone.advance(window, complete=True)
    assert time.monotonic() - started >= 1.0
    assert held(alone) == [seg.name for seg in window]
    assert alone.pieces[-1]["from"] == "build"
    alone.close()
