"""No secret ever reaches a log, a sidecar or Redis, in a real run of the processes.

A camera URL with a password (an unreachable RTSP camera, so the recorder logs connection errors) and
the device secret (uploads configured towards a closed loopback port, so the upload job fails and logs)
run beside a synthetic camera whose press goes through build and render.
"""

from __future__ import annotations

import json
import random
import re
import signal
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest
import redis
from rq.job import Job

from common import keys
from common.log import redact, register_secret
from common.pipeline import queue
from common.redisconn import SERIALIZER, members
from common.settings import Settings
from harness.redis_server import free_port
from harness.repo import REPO, gn_env, gravanois_cmd
from tests.helpers import as_bytes, wait_for

CAMERA_PASSWORD = "Pw-s3cret-4711"
DEVICE_SECRET = "dev-secret-0bfa7c19e2"
API_TOKEN = "tok-9f8e7d6c5b"


def start(settings: Settings, logs: Path, name: str, *args: str) -> subprocess.Popen[bytes]:
    logs.mkdir(parents=True, exist_ok=True)
    with open(logs / f"{name}.log", "wb") as out:
        return subprocess.Popen(
            gravanois_cmd(*args), env=gn_env(settings), stdout=out, stderr=subprocess.STDOUT, cwd=REPO
        )


@pytest.mark.slow
def test_secrets_never_reach_logs_sidecars_or_redis(
    make_settings: Callable[..., Settings], redis_conn: redis.Redis, tmp_path: Path
) -> None:
    closed = free_port()
    settings = make_settings(
        cameras=json.dumps(
            {
                "cam1": "testsrc:320x240@15",
                "cam2": f"rtsp://admin:{CAMERA_PASSWORD}@127.0.0.1:{closed}/stream",
            }
        ),
        pre_seconds=2.0,
        post_seconds=1.0,
        buffer_seconds=30.0,
        cooldown_seconds=0.0,
        restart_backoff_max=1.0,
        api_base=f"http://127.0.0.1:{free_port()}",
        api_token=API_TOKEN,
        client_id="client-1",
        venue_id="venue-1",
        device_secret=DEVICE_SECRET,
        max_attempts=1,
        log_level="DEBUG",
    )
    logs = tmp_path / "logs"
    device = settings.device_id
    procs = [
        start(settings, logs, "recorder-cam1", "recorder", "--camera", "cam1"),
        start(settings, logs, "recorder-cam2", "recorder", "--camera", "cam2"),
        start(settings, logs, "worker", "worker"),
    ]
    try:
        seg_key = keys.segments(device, "cam1")
        wait_for("cam1 pre-roll", lambda: redis_conn.zcard(seg_key) >= 4)
        wait_for("cam2 connection error", lambda: redis_conn.zcard(keys.camera_restarts(device, "cam2")) >= 1)
        press = subprocess.run(
            gravanois_cmd("trigger", "press", "--camera", "cam1"),
            env=gn_env(settings),
            capture_output=True,
            timeout=60,
            cwd=REPO,
        )
        (logs / "press.log").write_bytes(press.stdout + press.stderr)
        assert press.returncode == 0, press.stderr.decode()
        wait_for("the rendered highlight", lambda: any(settings.output_dir.glob("*.jpg")))
        # Then the upload runs (nobody listens on its port) and logs its failure, the device secret at hand.
        uploads = queue(settings, "upload", redis_conn)
        wait_for(
            "the upload attempt",
            lambda: any(
                (Job.fetch(j, connection=redis_conn, serializer=SERIALIZER).get_status(refresh=True) or "")
                not in ("queued", "started")
                for j in uploads.get_job_ids()
                + uploads.failed_job_registry.get_job_ids()
                + uploads.scheduled_job_registry.get_job_ids()
                + uploads.finished_job_registry.get_job_ids()
            ),
        )
    finally:
        for proc in procs:
            proc.send_signal(signal.SIGTERM)
        for proc in procs:
            try:
                proc.wait(20)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()

    texts = {p.name: p.read_bytes() for p in logs.iterdir()}
    sidecars = [p for p in Path(settings.data_dir).rglob("*.json")]
    assert any(p.parent == settings.output_dir for p in sidecars)
    texts.update({str(p): p.read_bytes() for p in sidecars})
    for key in redis_conn.scan_iter(f"{keys.ns(device)}:*"):
        kind = redis_conn.type(key)
        if kind == b"hash":
            texts[key.decode()] = b" ".join(map(as_bytes, redis_conn.hvals(key)))
        elif kind == b"zset":
            texts[key.decode()] = b" ".join(map(as_bytes, members(redis_conn.zrange(key, 0, -1))))
        elif kind == b"string":
            texts[key.decode()] = as_bytes(redis_conn.get(key) or b"")
    # RQ's own records of the device's jobs: arguments, meta and error texts (stored compressed).
    for key in redis_conn.scan_iter(f"rq:job:gn-{device}-*"):
        job = Job.fetch(key.decode().removeprefix("rq:job:"), connection=redis_conn, serializer=SERIALIZER)
        result = job.latest_result()
        error = (result.exc_string or "") if result is not None else ""
        texts[key.decode()] = json.dumps([job.args, job.meta, error]).encode()
    assert any(name.startswith("rq:job:") for name in texts)
    for name, data in texts.items():
        for secret in (CAMERA_PASSWORD, DEVICE_SECRET, API_TOKEN):
            assert secret.encode() not in data, f"{secret} leaked into {name}"
    # The recorder did log its failing camera, with the URL's credentials masked.
    cam2 = texts["recorder-cam2.log"].decode()
    lines = [json.loads(ln) for ln in cam2.splitlines() if ln.startswith("{")]
    assert lines and all("ts" in ln and "level" in ln and "process" in ln for ln in lines)
    assert any(ln["level"] in ("warning", "error") for ln in lines)
    health = redis_conn.hgetall(keys.camera_health(device, "cam2"))
    assert CAMERA_PASSWORD.encode() not in health.get(b"source", b"") and health.get(b"source")


# ---- redact: linear in the text, same masking as before


def _redact_reference(text: str, secrets: list[str]) -> str:
    """The former, quadratic `redact`, kept as the reference for what must be masked (small texts only)."""
    text = re.sub(
        r"(?P<scheme>[a-z][a-z0-9+.-]*://)(?P<creds>[^/@\s]+)@",
        lambda m: f"{m['scheme']}***@",
        text,
        flags=re.I,
    )
    text = re.sub(r"(?P<url>https?://[^\s?\"']+)\?[^\s\"']*", lambda m: f"{m['url']}?***", text, flags=re.I)
    text = re.sub(
        r"(?i)(X-Signature|Authorization)(['\"]?\s*[:=]\s*['\"]?)([^'\",\s]+(?: [^'\",\s]+)?)",
        lambda m: f"{m[1]}{m[2]}***",
        text,
    )
    for secret in secrets:
        text = text.replace(secret, "***")
    return text


def test_redact_masks_what_it_always_masked() -> None:
    secret = "zq-Device-Secret-77"
    register_secret(secret)
    # Pieces chosen to sit at every boundary the patterns care about: schemes after digits and
    # underscores, `://` without credentials, query strings, quoted and unquoted headers, the secret.
    pieces = [
        "rtsp://admin:hunter2@10.0.0.5:554/s",
        "1http://u:p@h",
        "x_ftp://a@b",
        "12://u@h",
        "a://b://c@d",
        "https://b.s3.amazonaws.com/a.mp4?X-Amz-Signature=abc&e=1",
        "http://?x",
        "http://h/p",
        "?",
        "@",
        "X-Signature: Zm9v",
        "authorization='Bearer tok1 x'",
        '"Authorization": "Bearer abc"',
        secret,
        "://",
        "http",
        "a",
        "1",
        "-",
        " ",
        "\n",
        '"',
        "'",
        "/",
        ":",
        "=",
        "é",
    ]
    rng = random.Random(10)
    for _ in range(3000):
        text = "".join(rng.choice(pieces) for _ in range(rng.randint(1, 12)))
        assert redact(text) == _redact_reference(text, [secret]), text


def test_redact_a_5_mb_job_argument() -> None:
    """The text that blocked a worker: megabytes, with long runs of letters (each a would-be URL scheme)."""
    secret = "zq-Device-Secret-77"
    register_secret(secret)
    chunk = (
        "a" * 100_000
        + " rtsp://admin:hunter2@cam/s https://b/x.mp4?X-Amz-Signature=abc "
        + "b1" * 50_000
        + f" Authorization: Bearer tok9 {secret} "
        + "http://" * 5_000
        + " "
    )
    text = chunk * (5_000_000 // len(chunk) + 1)
    assert len(text) >= 5_000_000
    out = redact(text)
    for leaked in ("hunter2", "X-Amz-Signature", "tok9", secret):
        assert leaked not in out
    expected_chunk = (
        "a" * 100_000
        + " rtsp://***@cam/s https://b/x.mp4?*** "
        + "b1" * 50_000
        + " Authorization: *** *** "
        + "http://" * 5_000
        + " "
    )
    assert out == expected_chunk * (5_000_000 // len(chunk) + 1)
