"""common.keys: every Redis name the box gives is made there; a real run leaves no key it does not know."""

from __future__ import annotations

import inspect
import time
from collections.abc import Callable

import pytest
from rq import worker_registration
from rq.job import Job
from rq.queue import Queue
from rq.registry import FailedJobRegistry
from rq.worker import Worker

from common import ids, keys
from common.alarms import raise_alarm
from common.journal import PressRecord
from common.keys import Alarm, Counter, Stage
from common.pipeline import enqueue
from common.redisconn import text
from common.settings import Settings
from harness.backend_server import BackendServer
from harness.redis_server import RedisServer
from recorder.health import Health
from tests.build_helpers import make_segments, run_build_worker
from tests.helpers import start_gravanois, wait_for
from tests.upload_helpers import upload_overrides
from trigger import press as press_mod
from worker.ahead import Ahead
from worker.scheduler import Scheduler

DEVICE = "box-1.court_a"  # a dot and a dash: the patterns must take them literally
PRESS_ID = "cam-1-20261206T051628666Z"


def made_by_kind() -> dict[str, list[str]]:
    """One key of each kind, made the way the box makes it."""
    build, upload = (
        keys.job_id(DEVICE, PRESS_ID, Stage.BUILD),
        keys.job_id(DEVICE, PRESS_ID, "upload", "open1"),
    )
    render_queue = keys.queue_name(DEVICE, Stage.RENDER)
    ours: dict[str, list[str]] = {
        name: [builder(DEVICE, "cam-1")]
        for name, builder in (
            ("segments", keys.segments),
            ("pins", keys.pins),
            ("camera_health", keys.camera_health),
            ("camera_restarts", keys.camera_restarts),
            ("cooldown", keys.cooldown),
        )
    }
    for name in ("cameras", "counters", "highlights", "alarms", "scheduler", "ahead", "restarting"):
        ours[name] = [getattr(keys, name)(DEVICE)]
    ours["highlight"] = [keys.highlight(DEVICE, PRESS_ID)]
    ours["upload_lock"] = [keys.upload_lock(DEVICE, PRESS_ID)]
    return {
        **ours,
        "rq_job": [Job.key_for(build), Job.key_for(upload)],
        "rq_results": [f"rq:results:{build}"],
        "rq_queue": [Queue.redis_queue_namespace_prefix + render_queue],
        "rq_registry": [FailedJobRegistry.key_template.format(render_queue), f"rq:wip:{render_queue}"],
        "rq_queue_workers": [worker_registration.WORKERS_BY_QUEUE_KEY % render_queue],
        "rq_worker": [Worker.redis_worker_namespace_prefix + keys.worker_name(DEVICE)],
        "rq_queues": ["rq:queues"],
        "rq_workers": ["rq:workers"],
    }


@pytest.mark.parametrize(
    ("kind", "made"),
    # ids by kind: a worker's name is random, and xdist's workers must collect the same tests
    [pytest.param(k, m, id=f"{k}-{i}") for k, ms in made_by_kind().items() for i, m in enumerate(ms)],
)
def test_each_name_the_box_makes_is_known_by_its_kind(kind: str, made: str) -> None:
    assert keys.kind_of(DEVICE, made) == kind


@pytest.mark.parametrize(
    "key",
    [
        keys.segments("box-2", "cam-1"),  # another device's
        keys.counters("box-1xcourt_a"),  # the dot in the device id is a dot
        "gn:box-1.court_a:cam:../x:segments",  # not a camera id
        "gn:box-1.court_a:highlight:cam-1",  # not a press id
        "gn:box-1.court_a:junk",
        "rq:queue:gn.box-1.court_a.thumbs",  # not one of the stages
        "rq:job:gn-box-1.court_a-cam-1-20261206T051628666Z",  # a job id without its stage
        "rq:job:hostile-box-1.court_a",
        "rq:worker:0123456789abcdef0123456789abcdef",  # RQ's own default worker name says no device
        "rq:suspended",
    ],
)
def test_a_key_nobody_here_makes_has_no_kind(key: str) -> None:
    assert keys.kind_of(DEVICE, key) is None


def test_every_key_builder_has_a_pattern() -> None:
    """A new key function without its pattern fails here, before a real run meets its key."""
    names = {"ns", "queue_name", "job_id", "worker_name", "name_patterns", "patterns", "kind_of"}
    builders = {
        name
        for name, fn in inspect.getmembers(keys, inspect.isfunction)
        if fn.__module__ == keys.__name__
        and not name.startswith("_")
        and list(inspect.signature(fn).parameters)[:1] == ["device"]
    }
    assert builders - names and builders - names <= set(keys.patterns(DEVICE))


def test_alarm_names() -> None:
    assert keys.alarm_name(Alarm.BUFFER_DISK_LOW, "cam-1") == "buffer_disk_low_cam-1"
    assert keys.alarm_name(Alarm.UPLOAD_CREDENTIALS) == "upload_credentials"
    with pytest.raises(ValueError, match="per camera"):
        keys.alarm_name(Alarm.BUFFER_DISK_LOW)
    with pytest.raises(ValueError, match="per box"):
        keys.alarm_name(Alarm.UPLOAD_CREDENTIALS, "cam-1")
    assert keys.alarm_of("buffer_disk_low_cam-1") is Alarm.BUFFER_DISK_LOW
    assert keys.alarm_of("output_undelivered_kept") is Alarm.OUTPUT_UNDELIVERED_KEPT
    assert keys.alarm_of("upload_credentials_cam-1") is None and keys.alarm_of("disk_low") is None


def test_a_pipeline_run_leaves_only_keys_the_keys_module_makes(
    make_settings: Callable[..., Settings],
    private_redis: RedisServer,
    backend: BackendServer,
    recording: Callable[..., None],
) -> None:
    """Presses (taken, in cooldown, journalled and replayed), builds, renders, uploads, a failed job, a
    recorder's restart, alarms, the scheduler's lock, the ahead heartbeat, a live worker: then every key
    in this Redis (a server of this test alone) must be one that common.keys makes."""
    s = make_settings(
        redis_url=private_redis.url, cooldown_seconds=30, **upload_overrides(backend.base, max_attempts=1)
    )
    conn, device = private_redis.client(), s.device_id
    recording(s, conn, "cam1")
    base = time.time() - 50
    make_segments(s, conn, "cam1", base, 50)
    taken = PressRecord("cam1", base + 44, 4, 2)
    assert press_mod.submit(s, conn, taken).state == press_mod.SCHEDULED
    assert press_mod.submit(s, conn, PressRecord("cam1", base + 45, 4, 2)).state == press_mod.COOLDOWN
    journalled = PressRecord("cam1", base + 5, 2, 1)  # 39 s before the taken one: outside its cooldown
    assert press_mod.keep(s, journalled, "Redis is down").state == press_mod.JOURNALLED
    assert [o.state for o in press_mod.replay(s, conn)] == [press_mod.SCHEDULED]
    gone = base - 3600  # a render whose sidecar is gone fails for good (one attempt)
    sidecar_name = f"{ids.highlight_stem('cam1', gone)}.json"
    enqueue(s, conn, Stage.RENDER, sidecar_name, press_id=ids.press_id("cam1", gone), at=gone)
    done = run_build_worker(s, "build", "render", "upload", timeout=240)
    assert done.returncode == 0, done.stderr[-3000:]
    for press in (taken, journalled):
        assert conn.hget(keys.highlight(device, press.press_id), "state") == b"done", press
    assert conn.hget(keys.highlight(device, ids.press_id("cam1", gone)), "state") == b"failed"
    # What the other processes leave: a recorder's restart and stall, alarms, the scheduler's lock,
    # the ahead encoder's heartbeat, a live worker, a press whose build waits for its post-roll.
    health = Health(conn, s, "cam1", "testsrc", "copy")
    health.restarted(time.time())
    health.stalled()
    raise_alarm(conn, s, Alarm.BUFFER_DISK_LOW, "the buffer disk is low", camera="cam1")
    raise_alarm(conn, s, Alarm.UPLOAD_CREDENTIALS, "the backend refuses the device")
    worker = start_gravanois(s, "worker", "--queues", "upload", "--no-scheduler")
    try:
        wait_for("the worker's registration", lambda: conn.scard(worker_registration.REDIS_WORKER_KEYS), 60)
        # These last seconds only: taken just before the scan.
        waiting = PressRecord("cam1", time.time(), 4, 60)
        assert press_mod.submit(s, conn, waiting).state == press_mod.SCHEDULED
        assert Scheduler(s, conn).hold_lock()
        Ahead(s, conn).heartbeat()
        found = {text(k): keys.kind_of(device, text(k)) for k in conn.scan_iter(count=1000)}
        queues, workers = (conn.smembers(k) for k in keys.SHARED.values())
    finally:
        worker.terminate()
        worker.wait(30)
    assert sorted(k for k, kind in found.items() if kind is None) == []
    # The run made the keys it was meant to (the check above is not vacuous).
    assert set(found.values()) >= {
        *("segments", "pins", "camera_health", "camera_restarts", "cameras", "cooldown", "counters"),
        *("highlights", "highlight", "alarms", "scheduler", "ahead"),
        *("rq_job", "rq_results", "rq_queue", "rq_registry", "rq_queue_workers", "rq_worker"),
        *keys.SHARED,
    }
    # The shared sets hold only this device's names, and the hashes only the fields named in keys.
    assert {keys.kind_of(device, text(m)) for m in queues} == {"rq_queue"}
    assert {keys.kind_of(device, text(m)) for m in workers} == {"rq_worker"}
    assert {text(f) for f in conn.hkeys(keys.counters(device))} <= set(Counter)
    alarms = sorted(str(keys.alarm_of(text(f))) for f in conn.hkeys(keys.alarms(device)))
    assert alarms == [Alarm.BUFFER_DISK_LOW, Alarm.UPLOAD_CREDENTIALS]
