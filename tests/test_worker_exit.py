"""Workers always stop: a burst worker on empty queues and a worker sent SIGTERM soon after its start.

RQ's worker teardown raced its command listener (redis-py 8.2 made the loser wait up to 60 s), so a
worker quitting soon after it started hung for a minute and supervisord ended it with SIGKILL. The race
depends on timing: each test starts many workers at once and at staggered moments.
"""

from __future__ import annotations

import signal
import subprocess
import time
from collections.abc import Callable

import pytest
import redis

from common.settings import Settings
from tests.helpers import start_gravanois, wait_for

# A worker asked to stop must be gone well inside supervisord's stop window (10-90 s per program); the
# hang was 60 s. Python's start-up under the suite's load takes a few seconds of this.
EXIT_WITHIN = 15.0
ROUNDS = 8


def exits_within(proc: subprocess.Popen[bytes], seconds: float) -> int | None:
    """The exit code if `proc` ends within `seconds`, else None (and it is killed)."""
    try:
        return proc.wait(seconds)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
        return None


def test_burst_workers_on_empty_queues_exit_within_seconds(make_settings: Callable[..., Settings]) -> None:
    s = make_settings()
    # All started at once: on two cores their own start-up takes a share of the allowance.
    deadline = time.monotonic() + 2 * EXIT_WITHIN
    workers = [
        start_gravanois(s, "worker", "--queues", "build,render", "--burst", "--no-scheduler")
        for _ in range(ROUNDS)
    ]
    codes = [exits_within(w, max(0.1, deadline - time.monotonic())) for w in workers]
    assert codes == [0] * ROUNDS, f"burst workers still running after {2 * EXIT_WITHIN} s: {codes}"


@pytest.mark.parametrize("delay", [0.0, 0.3, 1.0, 2.0, 4.0])
def test_a_worker_sent_sigterm_soon_after_start_exits_within_seconds(
    make_settings: Callable[..., Settings], redis_conn: redis.Redis, delay: float
) -> None:
    s = make_settings()
    registered = f"rq:workers:gn.{s.device_id}.build"
    workers = [start_gravanois(s, "worker", "--queues", "build", "--no-scheduler") for _ in range(4)]
    if delay:
        # Past its registration (when RQ's listener subscribes), then at `delay`: the racy moment.
        wait_for("the workers to register", lambda: redis_conn.scard(registered) == 4, timeout=60)
        time.sleep(delay)
    for w in workers:
        w.send_signal(signal.SIGTERM)
    codes = [exits_within(w, EXIT_WITHIN) for w in workers]
    assert None not in codes, f"workers still running {EXIT_WITHIN} s after SIGTERM: {codes}"
