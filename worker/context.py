"""What a job needs from its process: the settings (loaded once) and the job's Redis connection."""

from __future__ import annotations

import functools

import redis
from rq import get_current_job

from common.redisconn import connect
from common.settings import Settings, load_settings


@functools.cache
def settings() -> Settings:
    """The worker process's settings (environment and `.env`), loaded on first use."""
    return load_settings()


def connection() -> redis.Redis:
    """The current job's Redis connection (or a new one outside a job, e.g. in tests)."""
    job = get_current_job()
    return job.connection if job is not None else connect(settings())
