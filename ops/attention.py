"""What needs an operator: one sentence per problem found in a snapshot (ops.snapshot), saying what to do.

`gravanois status` lists them and exits 1 when there are any, `gravanois metrics` counts them
(`gravanois_attention`), the web dashboard shows them.
"""

from __future__ import annotations

from typing import Any

from common.settings import Settings

# A queue with at least this many jobs waiting is backed up (a press every few seconds for minutes).
QUEUE_BACKLOG = 20
# A press may sit in the journal for a moment while the trigger hands it to Redis.
JOURNAL_GRACE = 30.0


def attention(settings: Settings, snap: dict[str, Any]) -> list[str]:
    """One sentence per problem an operator should act on (empty: all is well)."""
    problems = []
    if not snap["redis"]["ok"]:
        problems.append(
            f"Redis at {snap['redis']['url']} is not answering: start redis-server or fix GN_REDIS_URL"
        )
    for cam in snap["cameras"]:
        if cam["configured"] and cam["recording"] is False:
            why = (
                cam["state"]
                if cam["state"] != "recording"
                else f"no new segment for {cam['last_segment_age']} s"
            )
            if cam["state"] == "absent":
                why = "no recorder has reported"
            problems.append(f"camera {cam['id']} is not recording ({why})")
    if snap["redis"]["ok"] and not snap.get("scheduler", {}).get("running"):
        problems.append(
            "no scheduler is running: start `gravanois scheduler` (supervisord runs one); "
            "retries and jobs of dead workers wait until one runs"
        )
    for stage, q in snap["queues"].items():
        if q["overdue"]:
            problems.append(
                f"{q['overdue']} scheduled {stage} job(s) overdue by {q['overdue_by']:g} s: "
                "no scheduler is moving them to the queue"
            )
        for job_id in q["orphaned"]:
            problems.append(f"{stage} job {job_id} is running on a worker that is gone (killed?)")
        if q["failed"]:
            problems.append(f"{q['failed']} failed {stage} job(s): see `gravanois failed`")
        if q["queued"] and not q["workers"]:
            problems.append(f"{q['queued']} {stage} job(s) waiting and no worker serves {q['queue']}")
        elif q["queued"] >= QUEUE_BACKLOG:
            problems.append(backlog(stage, q["queued"]))
    for name, disk in snap["disk"].items():
        if disk["low"]:
            problems.append(
                f"{name} disk low: {disk['free_mb']:.0f} MiB free at {disk['path']}"
                f" (floor {disk['min_free_mb']} MiB)"
            )
    pending = snap["journal"]
    if pending["pending"] and (pending["oldest_age"] or 0) > JOURNAL_GRACE:
        problems.append(
            f"{pending['pending']} press(es) waiting in {settings.journal_dir} for Redis: "
            "keep `gravanois trigger listen` running, it enqueues them when Redis answers"
        )
    for name, alarm in snap["alarms"].items():
        problems.append(f"alarm {name}: {alarm.get('message', '')}")
    return problems


def backlog(stage: str, queued: int) -> str:
    """The sentence for a backed-up queue (the updater recognises it: a backlog can be worked down)."""
    return f"{stage} queue backed up: {queued} jobs waiting"
