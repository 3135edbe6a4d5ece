"""The box's facts for `gravanois status`, `gravanois metrics` and the web dashboard: one snapshot.

Built only from the keys in `common.keys` (each camera's state from the recorder's verdict,
`common.verdict`), RQ's queues and registries, the journal and the disks; reading changes nothing. It ends
with what needs an operator (ops.attention) and `ok`, so every reader shows the same problems.
"""

from __future__ import annotations

import json
from typing import Any

import redis
from rq import worker_registration
from rq.job import Job

from common import journal, keys
from common.fsutil import free_mb
from common.log import redact
from common.pipeline import Stage, failure_of, queue
from common.redisconn import SERIALIZER, connect, scored
from common.settings import Settings
from common.timeutil import iso, now
from common.verdict import verdict
from common.version import package_version, release_dir
from deploy.release import Layout
from ops import budget as budget_view
from ops.attention import attention
from worker.ahead import off_reason

# Highlights listed by default.
RECENT_HIGHLIGHTS = 10
# Failed jobs listed (newest first) with their last error line.
FAILED_SHOWN = 5
# A scheduled job (a retry, an upload at opening time) this late means nothing is moving due jobs.
OVERDUE_SECONDS = 10.0


def snapshot(
    settings: Settings, conn: redis.Redis | None = None, highlights: int = RECENT_HIGHLIGHTS
) -> dict:
    """Everything `status` shows, as plain JSON-able data; `attention` lists what an operator must fix."""
    conn = conn or connect(settings)
    t = now()
    snap: dict[str, Any] = {
        "device": settings.device_id,
        "time": iso(t),
        "redis": {"url": redact(settings.redis_url), "ok": True},
        "cameras": [],
        "queues": {},
        "failed_jobs": [],
        "highlights": [],
        "alarms": {},
        "counters": {counter.value: 0 for counter in keys.Counter},
        "disk": _disks(settings),
        "journal": _journal(settings, t),
        "release": _release(),
    }
    try:
        conn.ping()
    except redis.RedisError as exc:
        snap["redis"].update(ok=False, error=redact(str(exc)))
    if not snap["redis"]["ok"]:
        snap["cameras"] = [_unknown_camera(c.id, c.label) for c in settings.cameras]
    else:
        try:
            snap["cameras"] = _cameras(settings, conn, t)
            snap["scheduler"] = _scheduler(settings, conn)
            snap["ahead"] = _ahead(settings, conn, t)
            snap["budget"] = budget_view.view(settings, conn)
            snap["queues"], snap["failed_jobs"] = _queues(settings, conn, t)
            snap["highlights"] = _highlights(settings, conn, highlights)
            snap["alarms"] = _alarms(settings, conn)
            snap["counters"].update(_counters(settings, conn))
        except redis.RedisError as exc:  # Redis went away half-way: report it, don't crash the check
            snap["redis"].update(ok=False, error=redact(str(exc)))
    snap["attention"] = attention(settings, snap)
    snap["ok"] = not snap["attention"]
    return snap


def _release() -> dict[str, Any]:
    """The version and release this command runs, what `current` names, and the last update's state."""
    layout = Layout.running()
    running = release_dir()
    return {
        "version": package_version(),
        "running": running.name if running else None,
        "current": layout.link("current") if layout else None,
        "previous": layout.link("previous") if layout else None,
        "update": layout.state.read() if layout else {},
    }


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _float(value: Any) -> float | None:
    try:
        return float(_text(value))
    except (TypeError, ValueError):
        return None


def _unknown_camera(cam: str, name: str) -> dict[str, Any]:
    """A configured camera whose health cannot be read (Redis down)."""
    return {
        "id": cam,
        "name": name,
        "configured": True,
        "state": "unknown",
        "recording": None,
        "why": f"camera {cam} is unknown: Redis is not answering",
        "last_segment_age": None,
        "stall_limit": None,
        "run": None,
        "buffered_seconds": None,
        "keyframe_interval": None,
        "restarts_last_hour": None,
        "mode": None,
        "source": None,
        "pid": None,
        "health_age": None,
        "last_error": None,
    }


def _cameras(settings: Settings, conn: redis.Redis, t: float) -> list[dict[str, Any]]:
    """Configured cameras first, then any other camera that registered a recorder."""
    configured = [c.id for c in settings.cameras]
    names = {c.id: c.label for c in settings.cameras}
    registered = sorted(_text(c) for c in conn.smembers(keys.cameras(settings.device_id)))
    out = []
    for cam in configured + [c for c in registered if c not in configured]:
        judged = verdict(conn, settings, cam, t)
        health = judged.health
        updated = _float(health.get("updated_at"))
        age = judged.age(t)
        restarts = conn.zcount(keys.camera_restarts(settings.device_id, cam), t - 3600, "+inf")
        out.append(
            {
                "id": cam,
                "name": names.get(cam, cam),
                "configured": cam in configured,
                "state": judged.state,
                "recording": judged.recording,
                "why": judged.why,
                "last_segment_age": round(age, 1) if age is not None else None,
                "stall_limit": judged.stall_limit,
                "run": judged.run or None,
                "buffered_seconds": _float(health.get("buffered_seconds")),
                "keyframe_interval": _float(health.get("keyframe_interval")),
                "restarts_last_hour": restarts,
                "mode": health.get("mode"),
                "source": redact(health["source"]) if "source" in health else None,
                "pid": health.get("pid"),
                "health_age": round(t - updated, 1) if updated else None,
                "last_error": redact(health["last_error"]) if health.get("last_error") else None,
            }
        )
    return out


def _scheduler(settings: Settings, conn: redis.Redis) -> dict[str, Any]:
    """Which process holds the device's scheduler lock (none: retries and reclaiming stall)."""
    holder = conn.get(keys.scheduler(settings.device_id))
    return {"running": holder is not None, "name": _text(holder) if holder is not None else None}


def _ahead(settings: Settings, conn: redis.Redis, t: float) -> dict[str, Any]:
    """The ahead encoder, as its heartbeat says: running or not, and per camera how many seconds ago
    its newest cached batch ended (informational: without it highlights are slower, not lost)."""
    raw = conn.get(keys.ahead(settings.device_id))
    try:
        beat = json.loads(raw) if raw is not None else None
    except ValueError:
        beat = None
    if not isinstance(beat, dict):
        return {"running": False, "off": off_reason(settings), "cameras": {}}
    cameras = {}
    for cam, info in (beat.get("cameras") or {}).items():
        until = _float((info or {}).get("cached_until"))
        age = round(t - until, 1) if until is not None else None
        cameras[str(cam)] = {"cached_age": age, "behind": bool((info or {}).get("behind"))}
    return {"running": True, "off": off_reason(settings), "name": beat.get("name"), "cameras": cameras}


def _live_workers(conn: redis.Redis, q: Any) -> int:
    """Workers registered on the queue whose own key still exists (a dead worker's key lapses)."""
    names = list(worker_registration.get_keys(queue=q, connection=conn))
    if not names:
        return 0
    with conn.pipeline(transaction=False) as pipe:
        for name in names:
            pipe.exists(name)
        return sum(1 for alive in pipe.execute() if alive)


def _queues(settings: Settings, conn: redis.Redis, t: float) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """Per stage: queued, scheduled (and overdue), running (and orphaned), failed, live workers."""
    stages: dict[str, Any] = {}
    failed: list[dict[str, Any]] = []
    for stage in Stage:
        q = queue(settings, stage, conn)
        # cleanup=False: looking must not change anything (the scheduler does the clean-up).
        running_ids = q.started_job_registry.get_job_ids(cleanup=False)
        # A running job whose heartbeat lapsed: its worker is gone (killed, power cut).
        orphaned = q.started_job_registry.get_expired_job_ids(t)
        overdue = scored(
            conn.zrangebyscore(q.scheduled_job_registry.key, 0, t - OVERDUE_SECONDS, withscores=True)
        )
        failed_ids = q.failed_job_registry.get_job_ids(desc=True, cleanup=False)
        queued_ids = q.get_job_ids()
        oldest = None
        if queued_ids:
            first = Job.fetch_many(queued_ids[:1], connection=conn, serializer=SERIALIZER)[0]
            if first is not None and first.enqueued_at is not None:
                oldest = round(t - first.enqueued_at.timestamp(), 1)
        running = []
        for job in Job.fetch_many(running_ids, connection=conn, serializer=SERIALIZER):
            if job is not None:
                running.append({"id": job.id, "progress": job.meta.get("progress")})
        stages[stage] = {
            "queue": q.name,
            "queued": len(queued_ids),
            "oldest_queued_age": oldest,
            "scheduled": q.scheduled_job_registry.get_job_count(cleanup=False),
            "overdue": len(overdue),
            "overdue_by": round(t - overdue[0][1], 1) if overdue else None,
            "running": len(running_ids),
            "running_jobs": running,
            "orphaned": orphaned,
            "failed": len(failed_ids),
            "workers": _live_workers(conn, q),
        }
        for job in Job.fetch_many(failed_ids[:FAILED_SHOWN], connection=conn, serializer=SERIALIZER):
            if job is None:
                continue
            failed.append(
                {
                    "id": job.id,
                    "stage": stage,
                    "ended_at": iso(job.ended_at.timestamp()) if job.ended_at else None,
                    "error": redact(failure_of(job)),
                }
            )
    return stages, failed


def _highlights(settings: Settings, conn: redis.Redis, n: int) -> list[dict[str, Any]]:
    """The last `n` highlights (newest first) with the state each stage noted."""
    out = []
    for member, score in scored(
        conn.zrevrange(keys.highlights(settings.device_id), 0, n - 1, withscores=True)
    ):
        press_id = _text(member)
        fields = {
            _text(k): _text(v) for k, v in conn.hgetall(keys.highlight(settings.device_id, press_id)).items()
        }
        out.append({"press_id": press_id, "at": iso(score), **{k: redact(v) for k, v in fields.items()}})
    return out


def _alarms(settings: Settings, conn: redis.Redis) -> dict[str, Any]:
    out = {}
    for name, raw in conn.hgetall(keys.alarms(settings.device_id)).items():
        try:
            value = json.loads(_text(raw))
        except ValueError:
            value = {"message": _text(raw)}
        out[_text(name)] = value
    return out


def _counters(settings: Settings, conn: redis.Redis) -> dict[str, int]:
    out = {}
    for name, value in conn.hgetall(keys.counters(settings.device_id)).items():
        try:
            out[_text(name)] = int(_text(value))
        except ValueError:
            continue
    return out


def _journal(settings: Settings, t: float) -> dict[str, Any]:
    """Presses on disk that have not reached Redis yet (the trigger journals them while Redis is down)."""
    presses = journal.pending(settings.journal_dir)
    return {
        "pending": len(presses),
        "oldest_age": round(t - presses[0].at, 1) if presses else None,
        "press_ids": [p.press_id for p in presses[:FAILED_SHOWN]],
    }


def _disks(settings: Settings) -> dict[str, Any]:
    out = {}
    for name, path, floor in (
        ("buffer", settings.buffer_dir, settings.buffer_min_free_mb),
        ("output", settings.data_dir, settings.output_min_free_mb),
    ):
        free = free_mb(path)
        out[name] = {"path": str(path), "free_mb": round(free, 1), "min_free_mb": floor, "low": free < floor}
    return out
