"""RQ's worker, adapted to the box: a work-horse that dies with its worker, so no orphan ffmpeg."""

from __future__ import annotations

import signal

from rq import Worker
from rq.job import Job
from rq.queue import Queue

from common.proc import set_parent_death_signal


class BoxWorker(Worker):
    """RQ's forking worker whose work-horse is SIGKILLed by the kernel if the worker dies.

    RQ puts the work-horse in its own process group, so killing the worker (even with SIGKILL) would
    leave the horse, and the ffmpeg it runs, alive. With PR_SET_PDEATHSIG the horse dies with its
    worker, and every ffmpeg started with `common.proc.spawn` dies with the horse.
    """

    def main_work_horse(self, job: Job, queue: Queue) -> None:
        set_parent_death_signal(signal.SIGKILL)
        super().main_work_horse(job, queue)
