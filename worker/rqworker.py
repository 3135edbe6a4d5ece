"""RQ's worker, adapted to the box: only the pipeline's job functions, one failure policy, no orphans.

- `BoxJob` refuses to import any function but the pipeline's own (common.pipeline.ALLOWED_FUNCTIONS):
  JSON keeps a job's arguments inert, this keeps a job from naming `os.system`.
- `BoxWorker`'s work-horse dies with its worker (PR_SET_PDEATHSIG), so no ffmpeg outlives a killed
  worker; it heartbeats every few seconds with a short TTL, so a job abandoned by a dead worker is
  taken back within seconds, not minutes; it installs its settings for the jobs it runs; and it
  always stops within about a second of being asked (`PromptTeardown`).
"""

from __future__ import annotations

import signal
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from rq import Worker
from rq.job import Job
from rq.queue import Queue

from common import keys
from common.pipeline import ALLOWED_FUNCTIONS, PermanentError
from common.proc import set_parent_death_signal
from common.settings import Settings, load_settings
from worker import context
from worker.failures import FailurePolicy

# Seconds between the worker's heartbeats while a job runs (RQ's default: 30).
JOB_MONITORING_INTERVAL = 5
# A running job whose heartbeat is older than this is abandoned (RQ's default: interval + 60).
HEARTBEAT_SLACK = 10
# A worker's own key lives this long without a heartbeat; an idle worker blocks on its queues for
# this minus 15 s (RQ's default 420 s kept dead workers listed for 7 minutes).
WORKER_TTL = 35
# Longest wait of the thread that listens for RQ's commands (shutdown, kill-horse) before it looks
# whether it should stop (RQ's: 60 s, which is how long a quitting worker could hang; see PromptTeardown).
PUBSUB_WAKE_SECONDS = 1.0


class BoxJob(Job):
    """A job that runs only the pipeline's own functions; anything else fails for good, unimported."""

    @property
    def func(self) -> Any:
        name = self.func_name
        if name not in ALLOWED_FUNCTIONS:
            raise PermanentError(f"refused: {str(name)[:120]!r} is not one of this box's job functions")
        return super().func

    # RQ imports a job's callbacks by the names stored with it; the pipeline uses none, and a name
    # written into Redis by someone else must not be imported either.
    @property
    def success_callback(self) -> None:
        return None

    @property
    def failure_callback(self) -> None:
        return None

    @property
    def stopped_callback(self) -> None:
        return None


# The mixin below goes on any RQ worker class (BoxWorker, a test's SimpleWorker); type checkers see its base.
if TYPE_CHECKING:
    _RQWorker = Worker
else:
    _RQWorker = object


class PromptTeardown(_RQWorker):
    """RQ's command listener with a bounded wait, so a worker always exits within about a second.

    RQ (2.x and 3.0) listens for commands in redis-py's pubsub thread with `sleep_time=60`, and at exit
    unsubscribes, then stops that thread. When the thread reads the unsubscribe reply before `stop()`
    clears its running flag, it finds itself with no subscription and waits up to `sleep_time` for one;
    redis-py 8.2's `stop()` joins it without a timeout (earlier releases did not wait), so a worker that
    quits soon after it started hung for up to a minute. A one-second wait bounds that race in every
    redis-py release; the idle thread waking once a second costs nothing measurable.
    """

    def subscribe(self) -> None:
        """Subscribe to this worker's command channel; the listening thread wakes every second."""
        self.pubsub = self.connection.pubsub()
        self.pubsub.subscribe(**{self.pubsub_channel_name: self.handle_payload})
        # RQ declares the attribute as None only, though its own subscribe() assigns the thread too.
        self.pubsub_thread = self.pubsub.run_in_thread(  # type: ignore[assignment]
            sleep_time=PUBSUB_WAKE_SECONDS, daemon=True, exception_handler=self._pubsub_exception_handler
        )


class BoxWorker(PromptTeardown, Worker):
    """RQ's forking worker with the box's job class, failure policy, heartbeat and death signal."""

    job_class = BoxJob

    def __init__(self, *args: Any, settings: Settings | None = None, **kwargs: Any) -> None:
        # The plain `rq worker -w worker.rqworker.BoxWorker` has no flags: the environment and .env.
        self.settings = settings if settings is not None else load_settings()
        context.install(self.settings)
        kwargs.setdefault("job_class", BoxJob)
        # RQ's own default (a bare uuid) would be the one name in Redis that says nothing of its device.
        kwargs["name"] = kwargs.get("name") or keys.worker_name(self.settings.device_id)
        kwargs.setdefault("job_monitoring_interval", JOB_MONITORING_INTERVAL)
        kwargs.setdefault("worker_ttl", WORKER_TTL)
        self.policy = FailurePolicy(self.settings)
        # Called at each maintenance pass (e.g. to restart this worker's scheduler child if it died).
        self.on_maintenance: Callable[[], None] | None = None
        kwargs.setdefault("exception_handlers", [self.policy.on_exception])
        kwargs.setdefault("work_horse_killed_handler", self.policy.on_horse_killed)
        super().__init__(*args, **kwargs)

    def run_maintenance_tasks(self) -> None:
        """RQ's maintenance, then the box's own (see `on_maintenance`)."""
        super().run_maintenance_tasks()
        if self.on_maintenance is not None:
            self.on_maintenance()

    def get_heartbeat_ttl(self, job: Job) -> int:
        """A short heartbeat TTL: the scheduler takes a dead worker's job back soon after it lapses."""
        interval: int = self.job_monitoring_interval  # rq leaves its type out
        return interval + HEARTBEAT_SLACK

    def main_work_horse(self, job: Job, queue: Queue) -> None:
        """RQ puts the horse in its own process group; the death signal still takes it (and ffmpeg) down."""
        set_parent_death_signal(signal.SIGKILL)
        super().main_work_horse(job, queue)
