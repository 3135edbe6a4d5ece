"""Every Redis key, queue name, job id and worker name the project creates, namespaced by device id.

Many boxes may share one Redis server, so our own keys live under `gn:{device}:`, and the names RQ
builds its keys from are ours too: queues `gn.{device}.{stage}`, job ids `gn-{device}-{press id}-{stage}`,
workers `gn.{device}.{random}`. Each name is made by one function below, and `patterns` derives from
those same functions what a key of each kind looks like, so that a test can tell every key in Redis by
its kind (and find one that nobody here made). The counters and alarms kept in the device's hashes are
named here too.
"""

from __future__ import annotations

import re
import uuid
from enum import StrEnum

from rq import worker_registration
from rq.executions import ExecutionRegistry
from rq.intermediate_queue import IntermediateQueue
from rq.job import Job
from rq.queue import Queue
from rq.registry import (
    CanceledJobRegistry,
    DeferredJobRegistry,
    FailedJobRegistry,
    FinishedJobRegistry,
    ScheduledJobRegistry,
    StartedJobRegistry,
)
from rq.results import Result
from rq.worker import Worker

from common import ids

PREFIX = "gn"


class Stage(StrEnum):
    """The pipeline's stages, in order; each has its own RQ queue (common.pipeline.STAGES says more)."""

    BUILD = "build"
    RENDER = "render"
    UPLOAD = "upload"


def ns(device: str) -> str:
    """The namespace of one device."""
    return f"{PREFIX}:{device}"


def segments(device: str, camera: str) -> str:
    """ZSET of a camera's closed segments; member = segment JSON, score = wall-clock start."""
    return f"{ns(device)}:cam:{camera}:segments"


def pins(device: str, camera: str) -> str:
    """ZSET of pinned windows; member = `pin_id|start|end`, score = expiry (epoch s)."""
    return f"{ns(device)}:cam:{camera}:pins"


def camera_health(device: str, camera: str) -> str:
    """HASH with the recorder's health and verdict: state, last_segment_end, stall_limit (its watchdog's),
    run, keyframe_interval, … (read through common.verdict)."""
    return f"{ns(device)}:cam:{camera}:health"


def camera_restarts(device: str, camera: str) -> str:
    """ZSET of ffmpeg restart times (member and score = epoch s), trimmed to the last day."""
    return f"{ns(device)}:cam:{camera}:restarts"


def cameras(device: str) -> str:
    """SET of camera ids that have a recorder (for `status`)."""
    return f"{ns(device)}:cameras"


def cooldown(device: str, camera: str) -> str:
    """String set with NX + expiry while a camera's press cooldown runs."""
    return f"{ns(device)}:cam:{camera}:cooldown"


def counters(device: str) -> str:
    """HASH of monotonic counters: field = a `Counter`."""
    return f"{ns(device)}:counters"


def highlights(device: str) -> str:
    """ZSET of recent highlights; member = press id, score = press time."""
    return f"{ns(device)}:highlights"


def highlight(device: str, press_id: str) -> str:
    """HASH with one highlight's state and paths."""
    return f"{ns(device)}:highlight:{press_id}"


def alarms(device: str) -> str:
    """HASH of active alarms: `alarm_name` → JSON {message, since}."""
    return f"{ns(device)}:alarms"


def scheduler(device: str) -> str:
    """String held (with a short expiry) by the device's one running scheduler; value = its name."""
    return f"{ns(device)}:scheduler"


def ahead(device: str) -> str:
    """String (JSON, short expiry) the running ahead encoder renews: its name, time and cameras' state."""
    return f"{ns(device)}:ahead"


def budget(device: str) -> str:
    """String (JSON, no expiry) the render budget keeps: each camera's measured encode costs, the key
    they were measured for (cameras, their streams, the watermark) and the decision made from them."""
    return f"{ns(device)}:budget"


def restarting(device: str) -> str:
    """String (with an expiry) set while the box restarts its programs on purpose (an update); value =
    why. A recorder stopped or starting meanwhile is restarting, not gone: presses are still taken."""
    return f"{ns(device)}:restarting"


def events(device: str) -> str:
    """STREAM of events for the fleet agent (common/events.py): one entry `event` = JSON each, bounded."""
    return f"{ns(device)}:events"


def events_sent(device: str) -> str:
    """String: the id of the last `events` entry the broker acknowledged (the agent resumes after it)."""
    return f"{ns(device)}:events:sent"


def fleet(device: str) -> str:
    """HASH of the fleet agent's own state (its connection, the config it answers, counts)."""
    return f"{ns(device)}:fleet"


def fleet_commands(device: str) -> str:
    """ZSET of command ids the agent has answered, by their expiry: a replayed command is refused."""
    return f"{ns(device)}:fleet:commands"


def upload_lock(device: str, press_id: str) -> str:
    """String set with NX + expiry while one upload job works on a highlight (no two register it)."""
    return f"{ns(device)}:upload:{press_id}:lock"


# ---- the names RQ makes its keys from


def queue_name(device: str, stage: Stage | str) -> str:
    """RQ queue of a stage for this device (ValueError for a stage that is not one)."""
    return _queue_name(device, Stage(stage).value)


def _queue_name(device: str, stage: str) -> str:
    return f"{PREFIX}.{device}.{stage}"


def stage_of_queue(name: str) -> Stage | None:
    """The stage a queue name (`gn.<device>.<stage>`) serves, or None for a queue that is not ours."""
    tail = name.rsplit(".", 1)[-1]
    return Stage(tail) if name.startswith(f"{PREFIX}.") and tail in Stage.__members__.values() else None


def job_id(device: str, press_id: str, stage: Stage | str, suffix: str = "") -> str:
    """The RQ job id of one highlight's stage job: the same press always gets the same id.

    `suffix` (letters and digits) names a deliberate second job of the same stage (an upload rescheduled
    to opening time).
    """
    return _job_id(device, press_id, Stage(stage).value, suffix)


def _job_id(device: str, press_id: str, stage: str, suffix: str) -> str:
    return f"{PREFIX}-{device}-{press_id}-{stage}" + (f"-{suffix}" if suffix else "")


def worker_name(device: str) -> str:
    """A name for a new RQ worker of this device (unique: RQ refuses two live workers of one name)."""
    return _worker_name(device, uuid.uuid4().hex)


def _worker_name(device: str, unique: str) -> str:
    return f"{PREFIX}.{device}.{unique}"


# ---- what is kept in the device's hashes


class Counter(StrEnum):
    """The fields of the `counters` hash (shown by `gravanois status` and `gravanois metrics`)."""

    PRESSES = "presses"
    PRESSES_IGNORED = "presses_ignored"
    CLIPS_BUILT = "clips_built"
    BUILDS_FAILED = "builds_failed"
    RENDERS_OK = "renders_ok"
    RENDERS_FAILED = "renders_failed"
    FFMPEG_RESTARTS = "ffmpeg_restarts"
    STALLS = "stalls"
    UPLOADS_OK = "uploads_ok"
    UPLOADS_FAILED = "uploads_failed"
    BYTES_UPLOADED = "bytes_uploaded"
    EVENTS_DROPPED = "events_dropped"
    FLEET_MESSAGES_REFUSED = "fleet_messages_refused"


# What each counter counts, for people (`gravanois metrics` help texts).
COUNTERS: dict[Counter, str] = {
    Counter.PRESSES: "Button presses accepted",
    Counter.PRESSES_IGNORED: "Presses ignored (cooldown, closed hours)",
    Counter.CLIPS_BUILT: "Raw highlight clips built",
    Counter.BUILDS_FAILED: "Build jobs that failed for good",
    Counter.RENDERS_OK: "Highlights rendered",
    Counter.RENDERS_FAILED: "Render jobs that failed for good",
    Counter.FFMPEG_RESTARTS: "Recorder ffmpeg restarts",
    Counter.STALLS: "Recorder stalls detected by the watchdog",
    Counter.UPLOADS_OK: "Highlights delivered to the backend",
    Counter.UPLOADS_FAILED: "Upload jobs that failed for good",
    Counter.BYTES_UPLOADED: "Bytes uploaded to the backend",
    Counter.EVENTS_DROPPED: "Fleet events dropped, oldest first, while the broker was away too long",
    Counter.FLEET_MESSAGES_REFUSED: "Messages from the broker refused (bad signature, expired, replayed)",
}


class Alarm(StrEnum):
    """The alarms `gravanois status` shows (named in the `alarms` hash by `alarm_name`)."""

    BUFFER_DISK_LOW = "buffer_disk_low"  # per camera: the recorder drops segments to keep disk space
    UPLOAD_CREDENTIALS = "upload_credentials"  # the backend refuses the device's credentials
    OUTPUT_UNDELIVERED_KEPT = "output_undelivered_kept"  # undelivered highlights hold the output disk
    OUTPUT_UNDELIVERED_DELETED = "output_undelivered_deleted"  # undelivered highlights were deleted


# The alarms raised once per camera.
CAMERA_ALARMS = frozenset({Alarm.BUFFER_DISK_LOW})
# The alarms about disk space (the fleet hears of them as storage.low and storage.ok).
STORAGE_ALARMS = frozenset(
    {Alarm.BUFFER_DISK_LOW, Alarm.OUTPUT_UNDELIVERED_KEPT, Alarm.OUTPUT_UNDELIVERED_DELETED}
)


def alarm_name(alarm: Alarm, camera: str | None = None) -> str:
    """An alarm's field in the `alarms` hash: its name, and for a camera's own alarm the camera's id
    (`buffer_disk_low_cam1`). ValueError when `camera` is given to an alarm of the box, or missing."""
    if (camera is not None) != (alarm in CAMERA_ALARMS):
        raise ValueError(f"alarm {alarm.value} is raised {'per camera' if camera is None else 'per box'}")
    return f"{alarm.value}_{camera}" if camera is not None else alarm.value


def alarm_of(name: str) -> Alarm | None:
    """The alarm an alarm field names (a camera's included), or None for a name nobody here raises."""
    if name in Alarm.__members__.values():
        return Alarm(name)
    return next((a for a in CAMERA_ALARMS if _matches(alarm_name(a, _hole("camera")), name)), None)


# ---- which kind a key is

# A hole marks where a variable part goes in a name being turned into its pattern (no name holds a NUL).
_HOLE = "\0"

# What each variable part of a name may be.
_PARTS = {
    "camera": ids.CAMERA_ID.pattern,
    "press_id": ids.PRESS_ID.pattern,
    "stage": "|".join(Stage),
    "suffix": "[A-Za-z0-9]+",
    "unique": "[0-9a-f]{32}",
}


def _hole(part: str) -> str:
    return f"{_HOLE}{part}{_HOLE}"


def _regex(shapes: list[str], parts: dict[str, str]) -> str:
    """One regular expression for names of these shapes, each hole standing for its part's pattern."""
    out = []
    for shape in shapes:
        text = re.escape(shape)
        for part, pattern in parts.items():
            text = text.replace(re.escape(_hole(part)), f"(?:{pattern})")
        assert _HOLE not in text, f"a part of {shape!r} has no pattern"
        out.append(text)
    return "|".join(f"(?:{x})" for x in out)


def _matches(shape: str, name: str) -> bool:
    """True when `name` has this shape (holes and all)."""
    return re.fullmatch(_regex([shape], _PARTS), name) is not None


def _our_shapes(device: str) -> dict[str, list[str]]:
    """Our own keys, by kind, with holes for their parts."""
    cam, press = _hole("camera"), _hole("press_id")
    return {
        "segments": [segments(device, cam)],
        "pins": [pins(device, cam)],
        "camera_health": [camera_health(device, cam)],
        "camera_restarts": [camera_restarts(device, cam)],
        "cameras": [cameras(device)],
        "cooldown": [cooldown(device, cam)],
        "counters": [counters(device)],
        "highlights": [highlights(device)],
        "highlight": [highlight(device, press)],
        "alarms": [alarms(device)],
        "scheduler": [scheduler(device)],
        "ahead": [ahead(device)],
        "budget": [budget(device)],
        "restarting": [restarting(device)],
        "events": [events(device)],
        "events_sent": [events_sent(device)],
        "fleet": [fleet(device)],
        "fleet_commands": [fleet_commands(device)],
        "upload_lock": [upload_lock(device, press)],
    }


def name_patterns(device: str) -> dict[str, re.Pattern[str]]:
    """The queue names, job ids and worker names this device's processes give RQ, by kind."""
    press, stage = _hole("press_id"), _hole("stage")
    shapes = {
        "queue": [_queue_name(device, stage)],
        "job": [_job_id(device, press, stage, ""), _job_id(device, press, stage, _hole("suffix"))],
        "worker": [_worker_name(device, _hole("unique"))],
    }
    return {kind: re.compile(_regex(s, _PARTS)) for kind, s in shapes.items()}


def _rq_shapes() -> dict[str, list[str]]:
    """RQ's own keys (as RQ 2.x names them) for a queue, job or worker name, by kind."""
    job, queue, worker = _hole("job"), _hole("queue"), _hole("worker")
    queue_key = Queue.redis_queue_namespace_prefix + queue
    registries = (
        StartedJobRegistry,
        FinishedJobRegistry,
        FailedJobRegistry,
        DeferredJobRegistry,
        ScheduledJobRegistry,
        CanceledJobRegistry,
    )
    return {
        "rq_job": [Job.key_for(job)],
        "rq_results": [Result.get_key(job)],
        "rq_executions": [ExecutionRegistry.key_template.format(job)],
        # RQ builds these two in instance properties: `Execution.key`, `Queue.registry_cleaning_key`.
        "rq_execution": [f"rq:execution:{job}:{_hole('unique')}"],
        "rq_clean_registries": [f"rq:clean_registries:{queue}"],
        "rq_queue": [queue_key],
        "rq_intermediate_queue": [IntermediateQueue.get_intermediate_queue_key(queue_key)],
        "rq_registry": [r.key_template.format(queue) for r in registries],
        "rq_queue_workers": [worker_registration.WORKERS_BY_QUEUE_KEY % queue],
        "rq_worker": [Worker.redis_worker_namespace_prefix + worker],
    }


# RQ's sets of every queue and every worker, which all devices of one Redis share; their members are
# names of the kinds above.
SHARED = {"rq_queues": Queue.redis_queues_keys, "rq_workers": worker_registration.REDIS_WORKER_KEYS}


def patterns(device: str) -> dict[str, re.Pattern[str]]:
    """What each kind of key this device creates looks like: ours, and RQ's for our names."""
    names = {kind: p.pattern for kind, p in name_patterns(device).items()}
    parts = {**_PARTS, **names}
    shapes = {**_our_shapes(device), **_rq_shapes(), **{kind: [key] for kind, key in SHARED.items()}}
    return {kind: re.compile(_regex(s, parts)) for kind, s in shapes.items()}


def kind_of(device: str, key: str) -> str | None:
    """Which kind of this device's keys `key` is, or None when nothing here makes such a key."""
    return next((kind for kind, p in patterns(device).items() if p.fullmatch(key)), None)
