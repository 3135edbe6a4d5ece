"""The upload stage in real `gravanois worker --queues upload` processes: a worker SIGKILLed between the
PUT and the finalize, and the JSON log lines of real runs, which must never hold a secret."""

from __future__ import annotations

import base64
import contextlib
import json
import os
import signal
import subprocess
import time
import zlib
from collections.abc import Callable
from pathlib import Path

import redis
from rq.job import Job

from common import keys, sidecar
from common.log import redact
from common.pipeline import queue
from common.redisconn import SERIALIZER, members
from common.settings import Settings
from harness.backend_server import BackendServer
from harness.repo import REPO, gn_env, gravanois_cmd
from tests.helpers import as_bytes, wait_for
from tests.upload_helpers import SECRET, TOKEN, enqueue, make_highlight, upload_overrides


def worker_cmd(*extra: str) -> list[str]:
    return gravanois_cmd("worker", "--queues", "upload", "--no-scheduler", *extra)


def run_burst(settings: Settings) -> subprocess.CompletedProcess[str]:
    res = subprocess.run(
        worker_cmd("--burst"), env=gn_env(settings), capture_output=True, text=True, timeout=120, cwd=REPO
    )
    assert res.returncode == 0, res.stderr
    return res


def test_worker_killed_between_put_and_finalize_resumes_at_finalize(
    make_settings: Callable[..., Settings],
    backend: BackendServer,
    highlight_media: tuple[Path, Path],
    redis_conn: redis.Redis,
) -> None:
    s = make_settings(**upload_overrides(backend.base, keep_after_upload=True))
    sc = make_highlight(s, *highlight_media)
    job = enqueue(s, redis_conn, sc)
    backend.inject("hold_finalize")  # the finalize request arrives and waits: the PUT is done
    proc = subprocess.Popen(
        worker_cmd(), env=gn_env(s), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=REPO
    )
    try:
        assert backend.finalize_waiting.wait(60), "the finalize request never arrived"
        remote = sidecar.load(sc)["remote"]
        assert remote["uploaded_at"] and remote["etag"] and "finalized_at" not in remote
        # The saved sidecar holds the pre-signed URL (the retry needs it); logged, it would be masked.
        assert remote["upload_url"] and "X-Sig" not in redact(sc.read_text())
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(10)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    backend.release()  # the held request is dropped unanswered: nothing was finalized
    assert not backend.finalized()
    # RQ notices a dead worker's job when its heartbeat lapses and retries it; here time is not waited
    # for, the cleanup RQ's maintenance runs is called with a timestamp past the lapse.
    q = queue(s, "upload", redis_conn)
    wait_for("the job in the started registry", lambda: job.id in q.started_job_registry.get_job_ids(0))
    q.started_job_registry.cleanup(timestamp=time.time() + 10**6)
    assert job.id in q.get_job_ids()
    run_burst(s)

    assert Job.fetch(job.id, connection=redis_conn, serializer=SERIALIZER).get_status() == "finished"
    (clip,) = backend.clips.values()
    assert clip.status == "finalized"
    assert backend.calls["register"] == 1 and backend.calls["put"] == 1 and backend.calls["finalize"] == 2
    assert sidecar.load(sc)["remote"]["finalized_at"]


def test_secrets_never_reach_logs_or_redis_in_real_runs(
    make_settings: Callable[..., Settings],
    backend: BackendServer,
    highlight_media: tuple[Path, Path],
    redis_conn: redis.Redis,
) -> None:
    s = make_settings(**upload_overrides(backend.base, log_level="DEBUG", max_attempts=4))
    logs: list[str] = []
    # A transient fault on each step, then success; then a closed venue.
    first = make_highlight(s, *highlight_media, at=time.time() - 60)
    second = make_highlight(s, *highlight_media)
    for fault in ("register_500", "put_drop", "finalize_422"):
        backend.inject(fault)
    enqueue(s, redis_conn, first)
    res = run_burst(s)
    logs += [res.stdout, res.stderr]
    assert len(backend.finalized()) == 1
    backend.inject("closed")
    enqueue(s, redis_conn, second)
    res = run_burst(s)
    logs += [res.stdout, res.stderr]
    # A wrong secret: refused, alarm, failed job with its traceback in Redis.
    wrong = "wrong-secret-5d9e1f2a3b"
    bad = make_settings(**upload_overrides(backend.base, log_level="DEBUG", device_secret=wrong))
    third = make_highlight(bad, *highlight_media, at=time.time() - 120)
    enqueue(bad, redis_conn, third)
    res = run_burst(bad)
    logs += [res.stdout, res.stderr]

    text = "\n".join(logs)
    lines = [json.loads(ln) for ln in text.splitlines() if ln.startswith("{")]
    events = {ln.get("event") for ln in lines}
    assert {"upload_registered", "upload_put_done", "upload_done", "upload_retry", "upload_blocked"} <= events
    assert {"backend_answer", "upload_closed_hours"} <= events
    assert len(backend.finalized()) >= 1 and backend.upload_urls and backend.signatures
    secrets = {SECRET, TOKEN, wrong, *backend.signatures}
    for url in backend.upload_urls:
        secrets |= {url, url.split("?", 1)[1], url.split("X-Sig=", 1)[1]}
    values: list[bytes | str] = []
    for key in redis_conn.scan_iter("*"):
        kind = redis_conn.type(key)
        if kind == b"hash":
            values += redis_conn.hvals(key)
        elif kind == b"stream":
            values += [v for _, entry in redis_conn.xrange(key) or [] for v in (entry or {}).values()]
        elif kind == b"string":
            values.append(redis_conn.get(key) or b"")
        elif kind == b"zset":
            values += members(redis_conn.zrange(key, 0, -1))
    stored = b"\n".join(_inflate(as_bytes(v)) for v in values)
    assert b"UploadBlocked" in stored  # the failed job's traceback is there, and was checked
    for secret in secrets:
        assert secret not in text, "a secret reached the logs"
        assert secret.encode() not in stored, "a secret reached Redis"
    raised = redis_conn.hget(keys.alarms(bad.device_id), "upload_credentials")
    assert raised is not None and "GN_DEVICE_SECRET" in json.loads(raised)["message"]


def _inflate(value: bytes) -> bytes:
    """The value plus what it holds when it is zlib and/or base64 encoded (RQ's tracebacks, results)."""
    out = [value]
    with contextlib.suppress(ValueError):
        value = base64.b64decode(value, validate=True)
        out.append(value)
    with contextlib.suppress(zlib.error):
        out.append(zlib.decompress(value))
    return b"\n".join(out)


def test_worker_refuses_an_unusable_api_base(make_settings: Callable[..., Settings]) -> None:
    s = make_settings(**upload_overrides("https://"))
    res = subprocess.run(
        worker_cmd("--burst"), env=gn_env(s), capture_output=True, text=True, timeout=60, cwd=REPO
    )
    assert res.returncode == 2 and "GN_API_BASE" in res.stderr and "Traceback" not in res.stderr
