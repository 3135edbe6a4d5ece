"""Small helpers every test module may use: polling with a deadline, fetching RQ jobs."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import redis
from rq.job import Job

from common.redisconn import SERIALIZER


def wait_for(what: str, check: Callable[[], Any], timeout: float = 30, every: float = 0.2) -> Any:
    """Poll `check` until it returns something truthy and return it; AssertionError naming `what`."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        assert time.monotonic() < deadline, f"timed out after {timeout} s waiting for {what}"
        time.sleep(every)


def fetch(conn: redis.Redis, job_id: str) -> Job:
    """An RQ job of this project (JSON-serialized)."""
    return Job.fetch(job_id, connection=conn, serializer=SERIALIZER)
