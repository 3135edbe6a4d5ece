"""The device's scheduler: due jobs onto their queues, abandoned jobs taken back, within seconds.

It replaces RQ's own scheduler, which runs in a process forked by a worker, dies with its Redis
connection and is not restarted, and whose lock comes back from Redis's append-only file after a
restart, so that no other worker takes over until it expires (a power cut stalled highlights for about
7 minutes that way). This loop:

- never exits on a Redis error: it says so once, waits and goes on when Redis is back;
- is one per device, by a lock that lapses `LOCK_TTL` seconds after its holder stops renewing it
  (a dead scheduler, or one from before a power cut, is replaced within seconds);
- every `TICK` (one script call and one pipelined read) moves each stage's due jobs (retries after
  their backoff, uploads waiting for the venue to open) from the scheduled registry to the queue;
- every `RECLAIM_EVERY` takes back the jobs of workers that stopped heartbeating (killed, power cut)
  through the failure policy, so they are retried (or failed, when out of attempts) at once;
- every `CLEAN_EVERY` runs RQ's other registry clean-ups and forgets dead workers' registrations.
"""

from __future__ import annotations

import os
import socket
import time
from collections.abc import Callable

import redis
from rq import worker_registration
from rq.registry import StartedJobRegistry, clean_registries
from rq.utils import current_timestamp

from common import keys
from common.log import event, get_logger
from common.pipeline import Stage, queue
from common.redisconn import SERIALIZER
from common.settings import Settings
from worker.outage import Outage
from worker.rqworker import BoxJob, BoxWorker

log = get_logger(__name__)

LOCK_TTL = 5
TICK = 1.0
RECLAIM_EVERY = 5.0
CLEAN_EVERY = 60.0
REDIS_RETRY = 1.0

# Take the lock if it is free, renew it if it is ours; 0 when another scheduler holds it.
_HOLD = """
local holder = redis.call('get', KEYS[1])
if holder == false then redis.call('set', KEYS[1], ARGV[1], 'EX', ARGV[2]) return 2 end
if holder == ARGV[1] then redis.call('expire', KEYS[1], ARGV[2]) return 1 end
return 0
"""


class Scheduler:
    """One device's scheduler loop (see the module's docstring)."""

    def __init__(self, settings: Settings, conn: redis.Redis, name: str | None = None) -> None:
        self.settings, self.conn = settings, conn
        self.name = name or f"{socket.gethostname()}:{os.getpid()}"
        self.lock_key = keys.scheduler(settings.device_id)
        self.queues = [queue(settings, stage, conn) for stage in Stage]
        # RQ's registry clean-ups hand failures to a worker object; this one never takes a job.
        self.worker = BoxWorker(self.queues, connection=conn, serializer=SERIALIZER, settings=settings)
        self.last_reclaim = self.last_clean = 0.0
        self.outage = Outage("scheduler")

    def run(self, should_stop: Callable[[], bool]) -> None:
        """Tick until `should_stop()`; Redis errors never end the loop."""
        event(log, "scheduler_start", scheduler=self.name, lock=self.lock_key)
        while not should_stop():
            self.outage.turn(self.tick, TICK, REDIS_RETRY)
        self.release()
        event(log, "scheduler_stop", scheduler=self.name)

    def tick(self) -> bool:
        """One pass: due jobs, and clean-ups when it is time; False when another scheduler leads."""
        if not self.hold_lock():
            return False
        self.enqueue_due()
        t = time.monotonic()
        if t - self.last_reclaim >= RECLAIM_EVERY:
            self.reclaim()
            self.last_reclaim = t
        if t - self.last_clean >= CLEAN_EVERY:
            self.clean()
            self.last_clean = t
        return True

    def hold_lock(self) -> bool:
        """Take the device's scheduler lock, or renew it if it is ours."""
        held = int(self.conn.eval(_HOLD, 1, self.lock_key, self.name, LOCK_TTL))
        if held == 2:
            event(log, "scheduler_lock_taken", scheduler=self.name)
        return held > 0

    def release(self) -> None:
        """Give the lock up at a clean stop, so a successor need not wait for it to lapse."""
        try:
            if self.conn.get(self.lock_key) == self.name.encode():
                self.conn.delete(self.lock_key)
        except redis.RedisError:
            pass

    def enqueue_due(self) -> int:
        """Move every due job of each stage's scheduled registry onto its queue; returns how many."""
        moved = 0
        t = current_timestamp()
        with self.conn.pipeline(transaction=False) as pipe:
            for q in self.queues:
                pipe.zrangebyscore(q.scheduled_job_registry.key, 0, t)
            due = pipe.execute()
        for q, raw_ids in zip(self.queues, due, strict=True):
            registry = q.scheduled_job_registry
            job_ids = [i.decode() for i in raw_ids]
            if not job_ids:
                continue
            jobs = BoxJob.fetch_many(job_ids, connection=self.conn, serializer=SERIALIZER)
            with self.conn.pipeline() as pipe:
                for job in jobs:
                    if job is not None:
                        q.enqueue_job(job, pipeline=pipe, at_front=job.should_enqueue_at_front())
                for job_id in job_ids:
                    registry.remove(job_id, pipeline=pipe)
                pipe.execute()
            moved += len(job_ids)
            event(log, "jobs_due", queue=q.name, jobs=job_ids[:20], count=len(job_ids))
        return moved

    def reclaim(self) -> None:
        """Retry (or fail) the jobs of workers that stopped heartbeating, through the failure policy."""
        handlers = [self.worker.policy.on_exception]
        for q in self.queues:
            registry = StartedJobRegistry(
                q.name, connection=self.conn, serializer=SERIALIZER, job_class=BoxJob
            )
            abandoned = registry.get_expired_job_ids()
            if abandoned:
                event(log, "jobs_abandoned", 30, queue=q.name, jobs=abandoned[:20])
                registry.cleanup(exception_handlers=handlers)
            q.intermediate_queue.cleanup(self.worker, q)

    def clean(self) -> None:
        """RQ's other registry clean-ups, and dead workers' registrations forgotten."""
        for q in self.queues:
            clean_registries(q, exception_handlers=[self.worker.policy.on_exception])
            worker_registration.clean_worker_registry(q)
