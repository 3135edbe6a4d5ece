"""ops.jobs, the failed-job operations `gravanois failed` and the dashboard share: what cannot be done is a
JobError with one sentence (never an exit), and a purge applies the output retention (real Redis, RQ's
own in-process worker)."""

from __future__ import annotations

import time
from collections.abc import Callable

import pytest
import redis
from rq import SimpleWorker

from common.pipeline import Stage, queue
from common.redisconn import SERIALIZER
from common.settings import Settings
from ops import jobs
from tests.helpers import highlight_files
from worker.rqworker import PromptTeardown


class QuickSimpleWorker(PromptTeardown, SimpleWorker):
    """RQ's in-process worker with the box's prompt teardown."""


def failed_build(settings: Settings, conn: redis.Redis, job_id: str) -> None:
    """A build job whose function raises, run to failure by a real RQ worker."""
    build = queue(settings, Stage.BUILD, conn)
    build.enqueue("json.loads", "not json", job_id=job_id)
    QuickSimpleWorker([build], connection=conn, serializer=SERIALIZER).work(burst=True)


def test_what_cannot_be_done_is_one_sentence(
    make_settings: Callable[..., Settings], redis_conn: redis.Redis
) -> None:
    s = make_settings()
    failed_build(s, redis_conn, "gn-jobs-broken")
    rows = jobs.failed_jobs(s, redis_conn)
    assert [r[1].id for r in rows] == ["gn-jobs-broken"]
    with pytest.raises(jobs.JobError, match=r"or pass --all$"):
        jobs.select(rows, (), all_=False)
    with pytest.raises(jobs.JobError, match=r"^no failed job matches nope, gn-jobs-brok: see"):
        jobs.select(rows, ("nope", "gn-jobs-brok"), all_=False)  # ids match exactly, never a prefix
    assert jobs.select(rows, (), all_=True) == rows
    [row] = jobs.select(rows, ("gn-jobs-broken",), all_=False)
    row[0].remove(row[1])  # someone else took it out of the registry meanwhile
    with pytest.raises(jobs.JobError, match="gn-jobs-broken is no longer in the failed registry"):
        jobs.requeue(s, row)


def test_a_requeue_gives_a_fresh_budget(
    make_settings: Callable[..., Settings], redis_conn: redis.Redis
) -> None:
    s = make_settings(max_attempts=3)
    failed_build(s, redis_conn, "gn-jobs-again")
    [row] = jobs.failed_jobs(s, redis_conn)
    jobs.requeue(s, row)
    assert jobs.failed_jobs(s, redis_conn) == []
    assert row[1].get_status(refresh=True) == "queued" and row[1].retries_left == 2


def test_a_purge_removes_the_jobs_then_applies_the_retention(
    make_settings: Callable[..., Settings], redis_conn: redis.Redis
) -> None:
    s = make_settings(keep_highlights_days=1)
    failed_build(s, redis_conn, "gn-jobs-purged")
    s.output_dir.mkdir(parents=True)
    # Uploads are off: rendered highlights count as delivered, the age bound applies to them.
    highlight_files(s.output_dir, "stale", "watermarked", 0, time.time() - 3 * 86400)
    highlight_files(s.output_dir, "fresh", "watermarked", 0, time.time())
    rows = jobs.failed_jobs(s, redis_conn)
    purged = jobs.purge(s, rows)
    assert jobs.failed_jobs(s, redis_conn) == [] and not redis_conn.exists(rows[0][1].key)
    assert purged.by_retention == ["stale"]
    assert sorted(p.name for p in s.output_dir.iterdir()) == ["fresh.jpg", "fresh.json", "fresh.mp4"]
