"""Output retention on a real small disk: delivered highlights go, undelivered ones stay (but for a
last resort that is logged and alarmed)."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path

import redis

from common import keys
from common.redisconn import text
from common.settings import Settings
from tests.helpers import fill, highlight_files, small_disk
from worker import retention

UPLOADS_ON = {
    "api_base": "http://127.0.0.1:9",
    "client_id": "c1",
    "venue_id": "v1",
    "device_secret": "s3cret",
}


def stems(out: Path) -> set[str]:
    return {p.stem for p in out.iterdir() if p.suffix == ".json"}


def alarms(conn: redis.Redis, s: Settings) -> dict[str, str]:
    return {text(k): json.loads(v)["message"] for k, v in conn.hgetall(keys.alarms(s.device_id)).items()}


def test_undelivered_highlights_survive_a_low_disk(
    make_settings: Callable[..., Settings], redis_conn: redis.Redis, tmp_path: Path
) -> None:
    with small_disk(tmp_path / "data", 40) as data:
        s = make_settings(data_dir=data, output_min_free_mb=12, **UPLOADS_ON)
        out = s.output_dir
        out.mkdir(parents=True)
        t = time.time() - 3600
        highlight_files(out, "a_uploaded", "uploaded", 3, t)
        highlight_files(out, "b_waiting", "watermarked", 3, t + 1)
        highlight_files(out, "c_uploaded", "uploaded", 3, t + 2)
        highlight_files(out, "d_failed_upload", "upload_failed", 3, t + 3)
        fill(data, leave_mb=8)  # below the 12 MiB floor, above its half
        removed = retention.enforce(s, conn=redis_conn)
        # The delivered ones go (oldest first) until the floor is met; the undelivered stay.
        assert set(removed) <= {"a_uploaded", "c_uploaded"} and "a_uploaded" in removed
        assert {"b_waiting", "d_failed_upload"} <= stems(out)

        (data / ".filler").unlink()
        fill(data, leave_mb=9)
        for stem in ("c_uploaded", "a_uploaded"):  # whatever delivered one is left goes first
            for f in out.glob(f"{stem}.*"):
                f.unlink()
        retention.enforce(s, conn=redis_conn)
        assert {"b_waiting", "d_failed_upload"} <= stems(out)
        assert "wait for upload and are kept" in alarms(redis_conn, s)[retention.ALARM_KEPT]

        # Last resort: under half the floor, the oldest undelivered goes, with an error and an alarm.
        (data / ".filler").unlink()
        fill(data, leave_mb=4)
        removed = retention.enforce(s, conn=redis_conn)
        assert removed[0] == "b_waiting"
        assert "deleted before its upload" in alarms(redis_conn, s)[retention.ALARM_DELETED]

        # Space is back: the alarms clear.
        (data / ".filler").unlink()
        retention.enforce(s, conn=redis_conn)
        assert retention.ALARM_KEPT not in alarms(redis_conn, s)
        assert retention.ALARM_DELETED not in alarms(redis_conn, s)


def test_with_uploads_off_a_rendered_highlight_counts_as_delivered(
    make_settings: Callable[..., Settings], tmp_path: Path
) -> None:
    s = make_settings(keep_highlights_max=2)
    out = s.output_dir
    out.mkdir(parents=True)
    t = time.time() - 3600
    for i in range(4):
        highlight_files(out, f"h{i}", "watermarked", 0, t + i)
    assert sorted(retention.enforce(s)) == ["h0", "h1"]
    assert stems(out) == {"h2", "h3"}
