"""recorder/retention.py: the pure decision, then a real recorder keeping its bound around pins."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path

import pytest
import redis

from common import journal
from common.segments import Pin, Segment
from common.settings import Settings
from harness.recorder_helpers import TEST_SOURCE, RecorderProc, health, index_of, on_disk
from recorder import housekeeping
from recorder.health import Health
from recorder.housekeeping import Housekeeper
from recorder.indexer import SegmentIndexer
from recorder.redislink import RedisLink
from recorder.retention import MIB, plan, windows_from
from recorder.segmenter import make_segment
from tests.helpers import wait_for

NOW = 10_000.0


def segs(n: int, size: int = MIB) -> tuple[list[Segment], dict[str, int]]:
    """n one-second segments ending now, oldest first, and their sizes."""
    segments = [make_segment(NOW - n + i, NOW - n + i + 1) for i in range(n)]
    return segments, {s.name: size for s in segments}


def names(p: list[Segment]) -> list[float]:
    return [s.start for s in p]


def test_age_bound() -> None:
    p = plan(*segs(100), [], NOW, buffer_seconds=60, free_mb=1000, min_free_mb=64)
    assert names(p.delete) == [NOW - 100 + i for i in range(39)]
    assert p.by_age == 39 and p.by_disk == 0 and not p.disk_low


def test_pins_and_journal_windows_are_kept() -> None:
    windows = [(NOW - 95.5, NOW - 94.5), (NOW - 80.0, NOW - 78.0)]
    p = plan(*segs(100), windows, NOW, buffer_seconds=60, free_mb=1000, min_free_mb=64)
    kept = {NOW - 96, NOW - 95, NOW - 80, NOW - 79}
    assert kept.isdisjoint(names(p.delete))
    assert len(p.delete) == 39 - 4


def test_redis_down_deletes_nothing_by_age() -> None:
    p = plan(*segs(100), [], NOW, buffer_seconds=60, free_mb=1000, min_free_mb=64, pins_known=False)
    assert p.delete == []


def test_disk_guard_drops_oldest_unpinned_first() -> None:
    windows = [(NOW - 20.0, NOW - 19.5)]  # pins the oldest of 20 segments
    p = plan(*segs(20), windows, NOW, buffer_seconds=60, free_mb=61.5, min_free_mb=64, pins_known=False)
    # 2.5 MiB short: three 1 MiB segments go, the oldest unpinned ones, never the pinned one.
    assert names(p.delete) == [NOW - 19, NOW - 18, NOW - 17]
    assert p.disk_low and p.by_disk == 3 and p.protected_dropped == 0


def test_disk_guard_last_resort_and_newest_kept() -> None:
    windows = [(NOW - 3.0, NOW)]
    p = plan(*segs(3), windows, NOW, buffer_seconds=60, free_mb=0, min_free_mb=64)
    # Everything is pinned and the disk is still short: pinned segments go too, except the newest.
    assert names(p.delete) == [NOW - 3, NOW - 2]
    assert p.protected_dropped == 2


def test_windows_from_pins_and_fresh_journal() -> None:
    pins = [Pin("p1", 10.0, 20.0, NOW + 60)]
    fresh = journal.PressRecord(camera="cam1", at=NOW - 5, pre=40, post=10)
    stale = journal.PressRecord(camera="cam1", at=NOW - journal.MAX_AGE_SECONDS - 1, pre=40, post=10)
    assert windows_from(pins, [fresh, stale], NOW) == [(10.0, 20.0), fresh.window]


def test_real_recorder_holds_the_bound_and_keeps_pinned_segments(
    make_settings: Callable[..., Settings], redis_conn: redis.Redis, tmp_path: Path
) -> None:
    settings = make_settings(
        cameras=json.dumps({"cam1": TEST_SOURCE}), pre_seconds=1.0, post_seconds=1.0, buffer_seconds=12.0
    )
    rec = RecorderProc(settings, "cam1", tmp_path / "logs")
    index = index_of(redis_conn, settings, "cam1")
    try:
        early = wait_for("three segments", lambda: (s := index.all()) and len(s) >= 3 and s)
        pinned, journalled = early[1], early[2]
        index.pin("press-1", pinned.start + 0.1, pinned.end - 0.1, ttl=120)
        press = journal.PressRecord(camera="cam1", at=journalled.start + 0.2, pre=0.1, post=0.1)
        journal.write(settings.journal_dir, press)
        deadline = time.time() + 20
        while time.time() < deadline:
            current = index.all()
            unprotected = [s for s in current if s not in (pinned, journalled)]
            # The bound: nothing unprotected older than buffer_seconds, plus retention's beat (it decides
            # every RETAIN_EVERY s and deletes one pass later) and a housekeeping beat.
            bound = settings.buffer_seconds + housekeeping.RETAIN_EVERY + 2.5
            assert unprotected[0].end >= time.time() - bound, unprotected[0]
            time.sleep(0.5)
        current = index.all()
        assert pinned in current and journalled in current
        assert early[0] not in current  # its unpinned neighbour went
        assert pinned.name in on_disk(settings, "cam1") and journalled.name in on_disk(settings, "cam1")
        index.unpin("press-1")
        journal.remove(settings.journal_dir, press)
        wait_for(
            "the released segments to go", lambda: pinned not in index.all() and journalled not in index.all()
        )
        assert pinned.name not in on_disk(settings, "cam1")
    finally:
        assert rec.terminate() == 0


def housekeeper_with_30_s(
    make_settings: Callable[..., Settings], redis_conn: redis.Redis
) -> tuple[Settings, SegmentIndexer, Housekeeper]:
    """A housekeeper (buffer 12 s) over 30 one-second segments on disk that ended in the last 30 s."""
    settings = make_settings(
        cameras=json.dumps({"cam1": TEST_SOURCE}), pre_seconds=1.0, post_seconds=1.0, buffer_seconds=12.0
    )
    indexer = SegmentIndexer("cam1", "encode", settings.seg_time, settings.camera_buffer_dir("cam1"))
    indexer.dir.mkdir(parents=True)
    t = time.time()
    for i in range(30):
        seg = make_segment(t - 30 + i, t - 29 + i)
        (indexer.dir / seg.name).write_bytes(b"\x47" * 188)
    indexer.load()
    link = RedisLink(redis_conn, "cam1")
    house = Housekeeper(settings, "cam1", link, indexer, Health(redis_conn, settings, "cam1", "x", "encode"))
    return settings, indexer, house


def test_a_pin_that_arrives_between_decision_and_deletion_keeps_the_segment(
    make_settings: Callable[..., Settings], redis_conn: redis.Redis
) -> None:
    # The housekeeper deletes one pass after deciding (the index removal rides on the next round trip):
    # a press that pins a doomed segment in between must still get it, on disk and back in the index.
    settings, indexer, house = housekeeper_with_30_s(make_settings, redis_conn)
    index = index_of(redis_conn, settings, "cam1")
    assert house.sync() and len(index.all()) == 30
    house.run([], {"state": "recording"})
    doomed = list(house.doomed)
    # Decided (the 17 or 18 that ended more than 12 s ago, depending on the clock), not yet done.
    assert len(doomed) in (17, 18) and len(index.all()) == 30
    late = doomed[5]
    index.pin("press-late", late.start + 0.1, late.end - 0.1, ttl=60)
    house.run([], {"state": "recording"})
    names = set(on_disk(settings, "cam1"))
    assert late.name in names and late in indexer.segments
    assert not [s for s in doomed if s != late and s.name in names]
    house.run([], {"state": "recording"})
    assert late in index.all() and not [s for s in index.all() if s in doomed and s != late]
    assert health(redis_conn, settings, "cam1")["state"] == "recording"


def test_retention_reads_the_pins_only_when_it_decides_or_deletes(
    make_settings: Callable[..., Settings], redis_conn: redis.Redis, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The pass that runs every second indexes and publishes health; retention's part of the round trip
    # (forget the doomed, read the pins) comes only every RETAIN_EVERY s and in the pass after a decision.
    monkeypatch.setattr(housekeeping, "RETAIN_EVERY", 1.0)
    _settings, indexer, house = housekeeper_with_30_s(make_settings, redis_conn)
    assert house.sync()

    def zrange_calls() -> int:
        return int(redis_conn.info("commandstats").get("cmdstat_zrange", {}).get("calls", 0))

    before = zrange_calls()

    def pin_reads() -> int:
        return zrange_calls() - before

    house.run([], {"state": "recording"})  # decides
    assert house.doomed and pin_reads() == 1
    house.run([], {"state": "recording"})  # deletes
    assert not house.doomed and len(indexer.segments) in (12, 13) and pin_reads() == 2
    for _ in range(3):
        house.run([], {"state": "recording"})
    assert pin_reads() == 2 and not house.doomed
    time.sleep(1.5)  # segments aged past the bound meanwhile; retention is due again
    house.run([], {"state": "recording"})
    assert pin_reads() == 3 and house.doomed
