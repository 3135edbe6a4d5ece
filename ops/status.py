"""`gravanois status` and `gravanois metrics`: what the box is doing, for people and for machines.

Both read one snapshot (`snapshot`) built only from the keys in `common.keys`, RQ's queues and
registries, and the disks. `status` prints it (a table, or `--json`) and exits non-zero when something
needs attention, so it doubles as a health check; `metrics` exposes the same numbers in Prometheus text
format through prometheus-client (a custom collector: every scrape reads Redis afresh).
"""

from __future__ import annotations

import json
import signal
import sys
import threading
from collections.abc import Iterator
from typing import Any

import click
import redis
from prometheus_client import CollectorRegistry, generate_latest, start_http_server
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from rq import worker_registration
from rq.job import Job

from common import journal, keys
from common.cli import settings_from
from common.fsutil import free_mb
from common.log import redact
from common.pipeline import Stage, failure_of, queue
from common.redisconn import SERIALIZER, connect, scored
from common.settings import Settings
from common.timeutil import iso, now
from common.verdict import verdict
from common.version import package_version, release_dir
from deploy.release import Layout
from worker.ahead import off_reason

# A queue with at least this many jobs waiting is backed up (a press every few seconds for minutes).
QUEUE_BACKLOG = 20
# Highlights listed by default.
RECENT_HIGHLIGHTS = 10
# Failed jobs listed (newest first) with their last error line.
FAILED_SHOWN = 5
# A press may sit in the journal for a moment while the trigger hands it to Redis.
JOURNAL_GRACE = 30.0
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
            problems.append(f"{stage} queue backed up: {q['queued']} jobs waiting")
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


# ---------------------------------------------------------------- text output


def _fmt(value: Any, unit: str = "") -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:g}{unit}"
    return f"{value}{unit}"


def _table(headers: list[str], rows: list[list[str]]) -> list[str]:
    widths = [max(len(h), *(len(r[i]) for r in rows)) if rows else len(h) for i, h in enumerate(headers)]
    lines = ["  ".join(h.ljust(w) for h, w in zip(headers, widths, strict=True)).rstrip()]
    lines += ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in rows]
    return lines


def _ahead_line(ahead: dict[str, Any] | None) -> str:
    """One line on the ahead encoder."""
    if ahead is None:
        return "ahead encoder: unknown (Redis down)"
    if ahead["off"]:
        return f"ahead encoder: off ({ahead['off']})"
    if not ahead["running"]:
        return "ahead encoder: NOT RUNNING (start `gravanois ahead`; highlights come later after a post-roll)"
    cams = [
        f"{cam} cached until {_fmt(info['cached_age'], ' s')} ago" + (" (BEHIND)" if info["behind"] else "")
        for cam, info in sorted(ahead["cameras"].items())
    ]
    return "ahead encoder: running" + (": " + ", ".join(cams) if cams else "")


def _release_line(release: dict[str, Any]) -> str:
    line = f"version {release['version']}, release {release['running'] or '(not an installed release)'}"
    update = release["update"]
    if update.get("phase") in ("trial", "rolling_back"):
        line += f"  (update to {update.get('to')} under way: {update['phase']})"
    elif update.get("phase") == "rolled_back":
        line += f"  (last update, to {update.get('to')}, rolled back: {update.get('reason', '')})"
    return line


def render_text(snap: dict[str, Any]) -> str:
    """The snapshot as tables for a terminal."""
    out = [
        f"device {snap['device']}  at {snap['time']}  redis {snap['redis']['url']}: "
        + ("ok" if snap["redis"]["ok"] else f"DOWN ({snap['redis'].get('error', '')})"),
        _release_line(snap["release"]),
        "",
    ]
    cams = [
        [
            c["id"] if c["name"] == c["id"] else f"{c['id']} ({c['name']})",
            {True: "yes", False: "NO", None: "?"}[c["recording"]]
            + ("" if c["configured"] else " (not configured)"),
            c["state"],
            _fmt(c["last_segment_age"], " s"),
            _fmt(c["buffered_seconds"], " s"),
            _fmt(c["keyframe_interval"], " s"),
            _fmt(c["restarts_last_hour"]),
            c["last_error"] or "",
        ]
        for c in snap["cameras"]
    ]
    out += _table(
        ["CAMERA", "RECORDING", "STATE", "LAST SEG AGE", "BUFFERED", "KEYFRAME", "RESTARTS/1H", "ERROR"], cams
    )
    out.append("")
    qrows = []
    for stage, q in snap["queues"].items():
        progress = ", ".join(
            f"{j['id']} {_fmt(j['progress'], '%')}" for j in q["running_jobs"] if j["progress"] is not None
        )
        qrows.append(
            [
                stage,
                str(q["scheduled"]),
                str(q["queued"]),
                str(q["running"]),
                str(q["failed"]),
                str(q["workers"]),
                progress,
            ]
        )
    out += _table(["QUEUE", "SCHEDULED", "QUEUED", "RUNNING", "FAILED", "WORKERS", "PROGRESS"], qrows)
    for f in snap["failed_jobs"]:
        out.append(f"  failed {f['stage']} {f['id']}: {f['error']}")
    out.append("")
    hrows = [
        [h["press_id"], h["at"], h.get("state", "-"), h.get("updated_at", "-")] for h in snap["highlights"]
    ]
    out += _table(["HIGHLIGHT", "PRESSED", "STATE", "UPDATED"], hrows)
    out.append("")
    out += _table(
        ["DISK", "FREE", "FLOOR", "PATH"],
        [
            [n, f"{d['free_mb']:.0f} MiB", f"{d['min_free_mb']} MiB", d["path"]]
            for n, d in snap["disk"].items()
        ],
    )
    out.append("")
    out.append(_ahead_line(snap.get("ahead")))
    if snap["journal"]["pending"]:
        out.append(f"journal: {snap['journal']['pending']} press(es) not yet in Redis")
        out.append("")
    out.append("counters: " + "  ".join(f"{k}={v}" for k, v in snap["counters"].items()))
    out.append("")
    if snap["attention"]:
        out.append("NEEDS ATTENTION:")
        out += [f"  - {p}" for p in snap["attention"]]
    else:
        out.append("all good")
    return "\n".join(out)


@click.command()
@click.option("--json", "as_json", is_flag=True, help="Print the snapshot as JSON (for machines).")
@click.option(
    "--highlights", "n", default=RECENT_HIGHLIGHTS, show_default=True, help="Recent highlights shown."
)
@click.pass_context
def status(ctx: click.Context, as_json: bool, n: int) -> None:
    """Show cameras, queues, recent highlights, disks, alarms and counters.

    Exits 1 when something needs attention (a camera not recording, Redis down, failed jobs, a queue
    nobody serves, a disk low, an alarm), so it also serves as a health check.
    """
    settings = settings_from(ctx, process="status")
    snap = snapshot(settings, highlights=n)
    click.echo(json.dumps(snap, indent=2) if as_json else render_text(snap))
    sys.exit(0 if snap["ok"] else 1)


# ---------------------------------------------------------------- Prometheus


class BoxCollector:
    """prometheus-client collector: counters from Redis, camera health, queues, disks, alarms."""

    def __init__(self, settings: Settings, conn: redis.Redis | None = None) -> None:
        self.settings = settings
        self.conn = conn or connect(settings)

    def collect(self) -> Iterator[Any]:
        """Read a fresh snapshot and yield metric families."""
        snap = snapshot(self.settings, self.conn, highlights=0)
        dev = ["device"]
        d = [snap["device"]]
        up = GaugeMetricFamily("gravanois_redis_up", "1 if Redis answers", labels=dev)
        up.add_metric(d, 1 if snap["redis"]["ok"] else 0)
        yield up
        for name, help_text in keys.COUNTERS.items():
            fam = CounterMetricFamily(f"gravanois_{name}", help_text, labels=dev)
            fam.add_metric(d, snap["counters"].get(name, 0))
            yield fam
        cam_labels = ["device", "camera"]
        recording = GaugeMetricFamily(
            "gravanois_camera_recording", "1 if the camera is recording", labels=cam_labels
        )
        age = GaugeMetricFamily(
            "gravanois_camera_last_segment_age_seconds",
            "Seconds since the last closed segment",
            labels=cam_labels,
        )
        buffered = GaugeMetricFamily(
            "gravanois_camera_buffered_seconds", "Seconds of video buffered", labels=cam_labels
        )
        keyframe = GaugeMetricFamily(
            "gravanois_camera_keyframe_interval_seconds", "Measured keyframe interval", labels=cam_labels
        )
        restarts = GaugeMetricFamily(
            "gravanois_camera_restarts_last_hour", "ffmpeg restarts in the last hour", labels=cam_labels
        )
        for cam in snap["cameras"]:
            labels = [snap["device"], cam["id"]]
            recording.add_metric(labels, 1 if cam["recording"] else 0)
            if cam["recording"] is None:
                continue
            restarts.add_metric(labels, cam["restarts_last_hour"])
            for gauge, key in (
                (age, "last_segment_age"),
                (buffered, "buffered_seconds"),
                (keyframe, "keyframe_interval"),
            ):
                if cam[key] is not None:
                    gauge.add_metric(labels, cam[key])
        yield from (recording, age, buffered, keyframe, restarts)
        jobs = GaugeMetricFamily(
            "gravanois_queue_jobs", "Jobs per stage and state", labels=["device", "stage", "state"]
        )
        workers = GaugeMetricFamily(
            "gravanois_queue_workers", "Workers serving a stage", labels=["device", "stage"]
        )
        for stage, q in snap["queues"].items():
            for state in ("scheduled", "queued", "running", "failed"):
                jobs.add_metric([snap["device"], stage, state], q[state])
            workers.add_metric([snap["device"], stage], q["workers"])
        yield from (jobs, workers)
        disk = GaugeMetricFamily(
            "gravanois_disk_free_bytes", "Free bytes on a disk", labels=["device", "disk"]
        )
        for name, info in snap["disk"].items():
            disk.add_metric([snap["device"], name], info["free_mb"] * (1 << 20))
        yield disk
        alarms = GaugeMetricFamily(
            "gravanois_alarm_active", "1 for each active alarm", labels=["device", "alarm"]
        )
        for name in snap["alarms"]:
            alarms.add_metric([snap["device"], name], 1)
        yield alarms
        pending = GaugeMetricFamily(
            "gravanois_journal_pending", "Presses journalled on disk, not yet in Redis", labels=dev
        )
        pending.add_metric(d, snap["journal"]["pending"])
        yield pending
        attention_fam = GaugeMetricFamily(
            "gravanois_attention", "Problems `gravanois status` lists (0: all good)", labels=dev
        )
        attention_fam.add_metric(d, len(snap["attention"]))
        yield attention_fam


def registry_for(settings: Settings, conn: redis.Redis | None = None) -> CollectorRegistry:
    """A Prometheus registry holding only the box's collector."""
    reg = CollectorRegistry(auto_describe=False)
    reg.register(BoxCollector(settings, conn))
    return reg


@click.command()
@click.option(
    "--serve",
    "port",
    type=int,
    default=None,
    help="Serve the metrics over HTTP on 127.0.0.1:PORT/metrics until stopped, instead of printing once.",
)
@click.pass_context
def metrics(ctx: click.Context, port: int | None) -> None:
    """Print the counters, camera health, queues and disks in Prometheus text format."""
    settings = settings_from(ctx, process="metrics")
    reg = registry_for(settings)
    if port is None:
        click.echo(generate_latest(reg).decode(), nl=False)
        return
    # Loopback only: the box's numbers are not for the venue's Wi-Fi.
    server, thread = start_http_server(port, addr="127.0.0.1", registry=reg)
    click.echo(f"metrics on http://127.0.0.1:{server.server_port}/metrics", err=True)
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    while not stop.is_set():
        stop.wait(1)
    server.shutdown()
    thread.join(5)
