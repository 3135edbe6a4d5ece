"""One failure policy for every stage: permanent errors skip their retries, the last failure is recorded once.

Like dramatiq's Retries middleware, this is a small piece beside the jobs, not logic in each of them.
RQ calls it through public hooks on every failed attempt:

- an exception raised by the job (the worker's exception handler, before RQ decides to retry);
- a work-horse that died under its worker (the worker's work-horse-killed handler);
- a job abandoned by a dead worker (the started registry's clean-up, run by `gravanois scheduler`).

A `PermanentError` (bad argument, refused credentials, missing input) sets the job's retries to zero;
anything else is transient and RQ retries it with the stage's backoff. Each attempt's reason goes into
the job's meta (for `gravanois failed list`), the highlight's state and, for render and upload, the
sidecar; the final attempt counts the failure and marks the highlight failed, once.
"""

from __future__ import annotations

import contextlib
import logging
import time
from types import TracebackType
from typing import Any

import redis
from rq.job import Job

from common import sidecar
from common.counters import incr
from common.events import EventType
from common.highlights import note_highlight
from common.keys import stage_of_queue
from common.log import event, get_logger
from common.pipeline import STAGES, HighlightState, PermanentError, Stage
from common.settings import Settings
from common.timeutil import iso, parse_iso
from worker import files

log = get_logger(__name__)

# How many failure times a job keeps in its meta.
KEEP_FAILURES = 20


def failure_reason(exc_type: type[BaseException] | None, exc: BaseException | None) -> str:
    """One line saying why an attempt failed."""
    name = exc_type.__name__ if exc_type else "error"
    if name == "AbandonedJobError":
        return "the worker died during the job (killed or crashed); the job was taken back"
    if name == "JobTimeoutException":
        return f"the job took longer than its timeout: {exc}"
    text = str(exc).strip().splitlines()[-1] if exc is not None and str(exc).strip() else name
    return text if isinstance(exc, PermanentError | RuntimeError | OSError) else f"{name}: {text}"


class FailurePolicy:
    """Decides retry or not and records each failed attempt; installed on every BoxWorker."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings

    def on_exception(
        self, job: Job, exc_type: type[BaseException], exc: BaseException, tb: TracebackType | Any
    ) -> bool:
        """RQ exception handler (also given to the started registry's clean-up for abandoned jobs)."""
        if isinstance(exc, PermanentError):
            job.retries_left = 0  # RQ reads this next, when it decides between retry and failed
        self.record(job, failure_reason(exc_type, exc))
        return True  # let RQ's own handling go on

    def on_horse_killed(self, job: Job, retpid: int, ret_val: int, rusage: Any) -> None:
        """RQ work-horse-killed handler: the job's process died (OOM killer, a signal) under its worker."""
        self.record(job, f"the job's process died (wait status {ret_val}): killed or out of memory")

    def record(self, job: Job, reason: str) -> None:
        """Write one failed attempt everywhere it is shown; the last one marks the highlight failed."""
        final = not job.should_retry
        stage = _stage(job)
        failures = [*job.meta.get("failures", []), round(time.time(), 3)][-KEEP_FAILURES:]
        job.meta.update(error=reason, failed_at=iso(), failures=failures)
        with contextlib.suppress(redis.RedisError):
            job.save_meta()
        level = logging.ERROR if final else logging.WARNING
        name = f"{stage or 'job'}_{'failed' if final else 'retry'}"
        event(log, name, level, job=job.id, error=reason, retries_left=job.retries_left or 0)
        if stage is None:
            return
        spec = STAGES[stage]
        press_id, at = job.meta.get("press_id"), job.meta.get("at")
        if stage is not Stage.BUILD:
            press_id, at = self.record_in_sidecar(job, stage, reason, final) or (press_id, at)
        if final:
            incr(job.connection, self.settings, spec.failed_counter)
        if isinstance(press_id, str) and isinstance(at, int | float):
            state = HighlightState.FAILED if final else HighlightState.RETRYING
            with contextlib.suppress(redis.RedisError, ValueError, OverflowError):
                fleet = EventType.HIGHLIGHT_FAILED if final else None
                note_highlight(
                    job.connection, self.settings, press_id, float(at), fleet, reason,
                    state=state, stage=stage, error=reason,
                )  # fmt: skip

    def record_in_sidecar(self, job: Job, stage: Stage, reason: str, final: bool) -> tuple[str, float] | None:
        """The attempt in the sidecar (the stage's section); the final one sets the stage's failed status."""
        spec = STAGES[stage]
        try:
            highlight = files.from_job_arg(self.settings, job.args[0] if job.args else None)
        except (PermanentError, ValueError, TypeError):
            return None
        path = highlight.current_sidecar()
        if path is None:
            return None
        with contextlib.suppress(OSError, ValueError):
            data = sidecar.load(path)
            attempts = int(spec.section_of(data).get("attempts") or 0) + 1
            changes = spec.section_changes(data, last_error=reason, attempts=attempts)
            if final and spec.failed_status is not None and data.get("status") in spec.starts_from:
                changes = {**changes, "status": spec.failed_status}
            data = sidecar.update(path, **changes)
            at = data.get("press_at")
            return highlight.press_id, parse_iso(at) if at else time.time()
        return None


def _stage(job: Job) -> Stage | None:
    """The stage of a job: from its meta, else from its queue."""
    with contextlib.suppress(ValueError):
        if job.meta.get("stage"):
            return Stage(job.meta["stage"])
    return stage_of_queue(job.origin or "")
