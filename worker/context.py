"""What a job needs from the worker process that runs it: that process's settings and Redis connection.

`gravanois worker` installs the settings it was started with (flags > environment > `.env` > defaults)
before it takes a job, and the work-horse RQ forks for each job inherits them; so a job writes exactly
where its worker was told to. Nothing here reads the environment on its own.
"""

from __future__ import annotations

import redis
from rq import get_current_job

from common.redisconn import connect
from common.settings import Settings

_installed: Settings | None = None


def install(settings: Settings) -> None:
    """Make `settings` the settings of every job this process (and the work-horses it forks) runs."""
    global _installed
    _installed = settings


def settings() -> Settings:
    """The settings of the worker running the current job."""
    if _installed is None:
        raise RuntimeError(
            "no worker settings installed: job functions run inside `gravanois worker` "
            "(or call worker.context.install(settings) first)"
        )
    return _installed


def connection() -> redis.Redis:
    """The current job's Redis connection (or a new one outside a job, e.g. in tests)."""
    job = get_current_job()
    return job.connection if job is not None else connect(settings())
