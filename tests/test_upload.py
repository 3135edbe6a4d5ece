"""Upload stage: signing, classification, pacing (pure), then real RQ jobs against the local backend."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import pytest
import redis
from rq.job import Job
from rq.registry import FailedJobRegistry, ScheduledJobRegistry

from common import keys, sidecar
from common.fsutil import sha256_file
from common.log import redact
from common.pipeline import queue
from common.redisconn import SERIALIZER, members, text
from common.settings import Settings
from harness.backend_server import BackendServer
from tests.helpers import run_gravanois
from tests.upload_helpers import (
    CLIENT,
    SECRET,
    TOKEN,
    VENUE,
    enqueue,
    make_highlight,
    run_worker,
    upload_overrides,
)
from worker import backend, upload
from worker.backend import AnswerMeaning, Step

# ---- pure parts


def test_signed_headers_follow_the_contract(settings: Settings) -> None:
    s = settings.__class__(**{**settings.__dict__, **upload_overrides("http://127.0.0.1:9")})
    body = b'{"a":1}'
    headers = backend.signed_headers(s, "POST", "/api/videos/abc/uploaded", body, 1_760_000_000, "n-1")
    digest = base64.b64encode(hashlib.sha256(body).digest()).decode()
    text = f"v1:POST:/api/videos/abc/uploaded:1760000000:n-1:{digest}"
    expected = base64.b64encode(hmac.new(SECRET.encode(), text.encode(), hashlib.sha256).digest()).decode()
    assert headers == {
        "X-Device-Id": s.device_id,
        "X-Client-Id": CLIENT,
        "X-Timestamp": "1760000000",
        "X-Nonce": "n-1",
        "X-Body-SHA256": digest,
        "X-Signature": expected,
        "Authorization": f"Bearer {TOKEN}",
    }
    fresh = backend.signed_headers(s, "POST", "/p", body)
    assert abs(int(fresh["X-Timestamp"]) - time.time()) < 5  # epoch seconds are UTC by definition
    assert len(fresh["X-Nonce"]) == 36 and fresh["X-Nonce"][14] == "4"  # UUID version 4


@pytest.mark.parametrize(
    ("step", "status", "code", "outcome"),
    [
        (Step.REGISTER, 201, "", AnswerMeaning.DONE),
        (Step.REGISTER, 500, "internal_error", AnswerMeaning.TRANSIENT),
        (Step.REGISTER, 429, "", AnswerMeaning.TRANSIENT),
        (Step.REGISTER, 403, "request_outside_allowed_time_window", AnswerMeaning.CLOSED),
        (Step.FINALIZE, 403, "request_outside_allowed_time_window", AnswerMeaning.CLOSED),
        (Step.REGISTER, 401, "signature_mismatch", AnswerMeaning.CREDENTIALS),
        (Step.FINALIZE, 403, "device_revoked", AnswerMeaning.CREDENTIALS),
        (Step.REGISTER, 400, "invalid_timestamp", AnswerMeaning.CREDENTIALS),
        (Step.FINALIZE, 409, "invalid_transition", AnswerMeaning.ALREADY_FINALIZED),
        (Step.FINALIZE, 422, "object_mismatch", AnswerMeaning.MISMATCH),
        (Step.PUT, 403, "AccessDenied", AnswerMeaning.URL_EXPIRED),
        (Step.PUT, 200, "", AnswerMeaning.DONE),
        (Step.PUT, 503, "SlowDown", AnswerMeaning.TRANSIENT),
    ],
)
def test_classify(step: Step, status: int, code: str, outcome: AnswerMeaning) -> None:
    assert backend.classify(step, status, code) is outcome


def test_stream_body_paces_to_the_limit_and_computes_md5(tmp_path: Path) -> None:
    data = bytes(range(256)) * 4000  # 1 MB
    src = tmp_path / "f.bin"
    src.write_bytes(data)
    clock = [0.0]
    slept: list[float] = []

    def sleep(s: float) -> None:
        slept.append(s)
        clock[0] += s

    rate = 100_000.0  # bytes/s
    with open(src, "rb") as fh:
        body = upload.StreamBody(fh, len(data), rate, 1e9, clock=lambda: clock[0], sleep=sleep)
        out = b"".join(iter(lambda: body.read(16384), b""))
    assert out == data and len(body) == len(data)
    assert body.md5.hexdigest() == hashlib.md5(data).hexdigest()
    # All bytes but the initial burst are paid for at the rate.
    assert sum(slept) == pytest.approx((len(data) - body.burst) / rate, rel=0.02)
    # No block went out ahead of its budget.
    assert all(s > 0 for s in slept)


def test_stream_body_gives_up_at_its_deadline(tmp_path: Path) -> None:
    src = tmp_path / "f.bin"
    src.write_bytes(b"x" * 200_000)
    clock = [0.0]
    with open(src, "rb") as fh:
        body = upload.StreamBody(fh, 200_000, 0, 10.0, clock=lambda: clock[0])
        body.read(1000)
        clock[0] = 11.0
        with pytest.raises(backend.BodyAborted):
            body.read(1000)


def test_put_timeout_scales_with_size_and_limit() -> None:
    assert upload.put_timeout(0, 0) == upload.PUT_BASE_SECONDS
    assert upload.put_timeout(64 << 20, 0) > upload.put_timeout(8 << 20, 0)
    # At 256 kbit/s a 20 MB file needs 625 s at the limit: the deadline leaves it twice that.
    assert upload.put_timeout(20_000_000, 256) >= 2 * 20_000_000 / 32_000


def test_next_opening(make_settings: Callable[..., Settings]) -> None:
    s = make_settings(open_hours="08:00-12:00,14:00-23:00", timezone="America/Sao_Paulo")  # UTC-3
    at = datetime(2026, 3, 10, 12, 30, tzinfo=UTC).timestamp()  # 09:30 local: open
    assert upload.next_opening(s, at) is None
    at = datetime(2026, 3, 10, 16, 0, tzinfo=UTC).timestamp()  # 13:00 local: lunch break
    assert upload.next_opening(s, at) == datetime(2026, 3, 10, 17, 1, tzinfo=UTC).timestamp()
    at = datetime(2026, 3, 11, 3, 0, tzinfo=UTC).timestamp()  # 00:00 local: closed until 08:00
    assert upload.next_opening(s, at) == datetime(2026, 3, 11, 11, 1, tzinfo=UTC).timestamp()
    night = make_settings(open_hours="18:00-02:00", timezone="UTC")
    assert upload.next_opening(night, datetime(2026, 3, 10, 1, 0, tzinfo=UTC).timestamp()) is None
    assert upload.next_opening(night, datetime(2026, 3, 10, 3, 0, tzinfo=UTC).timestamp()) == (
        datetime(2026, 3, 10, 18, 1, tzinfo=UTC).timestamp()
    )
    assert upload.next_opening(make_settings(open_hours=""), time.time()) is None


def test_check_config(make_settings: Callable[..., Settings]) -> None:
    upload.check_config(make_settings())  # uploads off: nothing to check
    upload.check_config(make_settings(**upload_overrides("https://api.example.com")))
    with pytest.raises(ValueError, match="GN_API_BASE"):
        upload.check_config(make_settings(**upload_overrides("https://")))


def test_redact_masks_a_sidecar_with_its_upload_url() -> None:
    url = "https://bucket.s3.sa-east-1.amazonaws.com/temp/c/v/x.mp4?X-Amz-Signature=abc123&X-Amz-Expires=3600"
    text = json.dumps({"remote": {"clip_id": "x", "upload_url": url}}, indent=2)
    masked = redact(text)
    assert "abc123" not in masked and "X-Amz-Expires" not in masked and '"clip_id": "x"' in masked


# ---- real jobs on a real RQ worker against the local backend


Setup = Callable[..., tuple[Settings, Path]]


@pytest.fixture
def setup(
    make_settings: Callable[..., Settings], backend: BackendServer, highlight_media: tuple[Path, Path]
) -> Setup:
    def make(**extra: object) -> tuple[Settings, Path]:
        s = make_settings(**upload_overrides(backend.base, **extra))
        return s, make_highlight(s, *highlight_media)

    return make


def counters(conn: redis.Redis, s: Settings) -> dict[str, int]:
    return {text(k): int(v) for k, v in conn.hgetall(keys.counters(s.device_id)).items()}


def highlight_state(conn: redis.Redis, s: Settings, sidecar_path: Path) -> str:
    press_id = json.loads(sidecar_path.read_text())["press_id"] if sidecar_path.exists() else None
    press_id = press_id or text(members(conn.zrange(keys.highlights(s.device_id), -1, -1))[0])
    return text(conn.hget(keys.highlight(s.device_id, press_id), "state") or b"")


def test_happy_path_all_three_steps_and_files_deleted(
    setup: Setup, backend: BackendServer, redis_conn: redis.Redis, monkeypatch: pytest.MonkeyPatch
) -> None:
    s, sc = setup()
    data = sidecar.load(sc)
    video = Path(data["wm_path"])
    digest, size = sha256_file(video), video.stat().st_size
    job = enqueue(s, redis_conn, sc)
    run_worker(s, redis_conn, monkeypatch)

    job = Job.fetch(job.id, connection=redis_conn, serializer=SERIALIZER)
    assert job.get_status() == "finished"
    (clip,) = backend.clips.values()
    assert job.return_value() == clip.clip_id and clip.status == "finalized" and clip.data is not None
    assert hashlib.sha256(clip.data).hexdigest() == digest and len(clip.data) == size
    assert clip.content_type == "video/mp4"
    reg = clip.registration
    assert reg["sha256"] == digest and reg["venue_id"] == VENUE and reg["captured_at"] == data["press_at"]
    assert reg["meta"] == {k: data["meta_wm"][k] for k in sidecar.META_FIELDS}
    assert backend.calls == {"register": 1, "put": 1, "put_stored": 1, "finalize": 1}
    # Confirmed: local files go (GN_KEEP_AFTER_UPLOAD=false).
    assert not video.exists() and not sc.exists() and not Path(data["thumbnail_path"]).exists()
    assert counters(redis_conn, s) == {"uploads_ok": 1, "bytes_uploaded": size}
    assert highlight_state(redis_conn, s, sc) == "done"


def test_keep_after_upload_records_every_step(
    setup: Setup, backend: BackendServer, redis_conn: redis.Redis, monkeypatch: pytest.MonkeyPatch
) -> None:
    s, sc = setup(keep_after_upload=True)
    enqueue(s, redis_conn, sc)
    run_worker(s, redis_conn, monkeypatch)
    data = sidecar.load(sc)
    remote = data["remote"]
    (clip,) = backend.clips.values()
    assert data["status"] == "uploaded" and Path(data["wm_path"]).exists()
    assert remote["clip_id"] == clip.clip_id and remote["etag"].strip('"') == clip.etag
    stamps = [remote[k] for k in ("registered_at", "uploaded_at", "finalized_at")]
    assert stamps == sorted(stamps) and remote["upload_url_expires_at"] > remote["registered_at"]
    assert "upload_url" not in remote  # useless after finalize, and a write grant until it expires
    # A second run of the job is a no-op.
    enqueue(s, redis_conn, sc)
    run_worker(s, redis_conn, monkeypatch)
    assert backend.calls["register"] == 1 and len(backend.clips) == 1


@pytest.mark.parametrize(
    ("fault", "calls"),
    [
        ("register_500", {"register": 2, "put": 1, "finalize": 1}),
        ("put_drop", {"register": 1, "put": 2, "finalize": 1}),
        ("put_bad_etag", {"register": 1, "put": 2, "finalize": 1}),
        ("finalize_422", {"register": 1, "put": 2, "finalize": 2}),
    ],
)
def test_transient_faults_retry_and_resume_without_duplicates(
    fault: str,
    calls: dict[str, int],
    setup: Setup,
    backend: BackendServer,
    redis_conn: redis.Redis,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    s, sc = setup(keep_after_upload=True)
    backend.inject(fault)
    job = enqueue(s, redis_conn, sc)
    run_worker(s, redis_conn, monkeypatch)
    job = Job.fetch(job.id, connection=redis_conn, serializer=SERIALIZER)
    assert job.get_status() == "finished" and job.retries_left == 1  # one RQ retry used
    assert {k: backend.calls[k] for k in calls} == calls
    (clip,) = backend.clips.values()  # exactly one clip record
    assert clip.status == "finalized" and clip.data is not None
    assert hashlib.sha256(clip.data).hexdigest() == sha256_file(Path(sidecar.load(sc)["wm_path"]))
    assert counters(redis_conn, s).get("uploads_failed") is None


def test_transient_fault_on_every_attempt_fails_for_good(
    setup: Setup, backend: BackendServer, redis_conn: redis.Redis, monkeypatch: pytest.MonkeyPatch
) -> None:
    s, sc = setup()
    backend.inject("put_drop", times=3)
    job = enqueue(s, redis_conn, sc)
    run_worker(s, redis_conn, monkeypatch)
    job = Job.fetch(job.id, connection=redis_conn, serializer=SERIALIZER)
    assert job.get_status() == "failed" and job.id in FailedJobRegistry(queue=queue(s, "upload", redis_conn))
    assert backend.calls["register"] == 1 and backend.calls["put"] == 3 and len(backend.clips) == 1
    data = sidecar.load(sc)  # files kept for a later requeue
    assert data["status"] == "upload_failed" and Path(data["wm_path"]).exists()
    assert (
        data["remote"]["attempts"] == 3 and "put: no answer connection_error" in data["remote"]["last_error"]
    )
    assert counters(redis_conn, s)["uploads_failed"] == 1
    assert highlight_state(redis_conn, s, sc) == "failed"


def test_expired_url_registers_again_once(
    setup: Setup, backend: BackendServer, redis_conn: redis.Redis, monkeypatch: pytest.MonkeyPatch
) -> None:
    s, sc = setup(keep_after_upload=True)
    backend.inject("expired_url")  # the storage refuses the first URL as expired
    job = enqueue(s, redis_conn, sc)
    run_worker(s, redis_conn, monkeypatch)
    job = Job.fetch(job.id, connection=redis_conn, serializer=SERIALIZER)
    # A URL refused right after registering means clocks disagree: the retry (with backoff) registers
    # again, never the same attempt in a loop.
    assert job.get_status() == "finished" and job.retries_left == 1
    remote = sidecar.load(sc)["remote"]
    (done,) = backend.finalized()
    # A dead URL can only be replaced by a new registration: the first record stays, never uploaded.
    assert backend.calls["register"] == 2 and len(backend.clips) == 2
    assert remote["clip_id"] == done.clip_id and remote["expired_clip_ids"] != [done.clip_id]
    (abandoned,) = [c for c in backend.clips.values() if c.clip_id != done.clip_id]
    assert abandoned.data is None and remote["expired_clip_ids"] == [abandoned.clip_id]


def test_url_older_than_an_hour_is_replaced_before_the_put(
    setup: Setup, backend: BackendServer, redis_conn: redis.Redis, monkeypatch: pytest.MonkeyPatch
) -> None:
    s, sc = setup(keep_after_upload=True)
    backend.inject("put_drop", times=1)
    # One attempt only: it registers and loses its PUT; then the registration is aged.
    once = s.__class__(**{**s.__dict__, "max_attempts": 1})
    enqueue(once, redis_conn, sc)
    run_worker(once, redis_conn, monkeypatch)
    remote = sidecar.load(sc)["remote"]
    assert remote["clip_id"] and "uploaded_at" not in remote
    # The backend's hint said 12 h; the sidecar says 1 h, which is what S3 really does.
    assert (
        3500
        < (
            datetime.fromisoformat(remote["upload_url_expires_at"].replace("Z", "+00:00"))
            - datetime.fromisoformat(remote["registered_at"].replace("Z", "+00:00"))
        ).total_seconds()
        <= 3600
    )
    remote["upload_url_expires_at"] = "2000-01-01T00:00:00.000Z"
    sidecar.update(sc, remote=remote)
    enqueue(s, redis_conn, sc)
    run_worker(s, redis_conn, monkeypatch)
    assert backend.calls["register"] == 2 and backend.calls["put"] == 2  # no PUT on the old URL
    assert len(backend.finalized()) == 1


def test_closed_venue_is_rescheduled_not_failed(
    setup: Setup, backend: BackendServer, redis_conn: redis.Redis, monkeypatch: pytest.MonkeyPatch
) -> None:
    s, sc = setup(keep_after_upload=True)
    backend.inject("closed")
    job = enqueue(s, redis_conn, sc)
    before = time.time()
    run_worker(s, redis_conn, monkeypatch)
    job = Job.fetch(job.id, connection=redis_conn, serializer=SERIALIZER)
    assert job.get_status() == "finished" and job.return_value() == "rescheduled"
    q = queue(s, "upload", redis_conn)
    scheduled = ScheduledJobRegistry(queue=q)
    (new_id,) = scheduled.get_job_ids()
    at = scheduled.get_scheduled_time(new_id).timestamp()
    assert before + upload.CLOSED_RETRY - 5 < at < time.time() + upload.CLOSED_RETRY + 5
    new = Job.fetch(new_id, connection=redis_conn, serializer=SERIALIZER)
    assert new.args == [sc.name] and new.retries_left == 2  # a fresh job, no retry burned
    assert len(backend.clips) == 0 and counters(redis_conn, s).get("uploads_failed") is None
    assert sidecar.load(sc)["remote"]["next_try_at"]
    # Opening time comes: the scheduled job runs and delivers.
    scheduled.remove(new)
    q.enqueue_job(new)
    run_worker(s, redis_conn, monkeypatch)
    assert len(backend.finalized()) == 1 and len(backend.clips) == 1


def test_closed_venue_waits_for_the_next_opening(
    make_settings: Callable[..., Settings],
    backend: BackendServer,
    highlight_media: tuple[Path, Path],
    redis_conn: redis.Redis,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Hours that exclude "now" whatever the time of the test run: open one hour starting 3 h from now.
    start = datetime.fromtimestamp(time.time() + 3 * 3600, UTC)
    end = datetime.fromtimestamp(time.time() + 4 * 3600, UTC)
    hours = f"{start:%H}:00-{end:%H}:00"
    s = make_settings(**upload_overrides(backend.base, open_hours=hours, timezone="UTC"))
    sc = make_highlight(s, *highlight_media)
    backend.inject("closed")
    enqueue(s, redis_conn, sc)
    run_worker(s, redis_conn, monkeypatch)
    scheduled = ScheduledJobRegistry(queue=queue(s, "upload", redis_conn))
    (new_id,) = scheduled.get_job_ids()
    expected = start.replace(minute=0, second=0, microsecond=0).timestamp() + upload.OPENING_SLACK
    assert scheduled.get_scheduled_time(new_id).timestamp() == pytest.approx(expected, abs=1)


def test_credential_error_stops_retrying_and_raises_an_alarm(
    setup: Setup,
    backend: BackendServer,
    redis_conn: redis.Redis,
    monkeypatch: pytest.MonkeyPatch,
    make_settings: Callable[..., Settings],
) -> None:
    s, sc = setup(keep_after_upload=True, device_secret="not-the-device-secret")
    job = enqueue(s, redis_conn, sc)
    run_worker(s, redis_conn, monkeypatch)
    job = Job.fetch(job.id, connection=redis_conn, serializer=SERIALIZER)
    assert job.get_status() == "failed" and job.id in FailedJobRegistry(queue=queue(s, "upload", redis_conn))
    assert backend.calls["register"] == 1  # no retry burned on a refusal that retrying cannot fix
    assert len(backend.clips) == 0
    data = sidecar.load(sc)
    assert data["status"] == "upload_blocked" and "signature_mismatch" in data["remote"]["last_error"]
    assert Path(data["wm_path"]).exists()
    assert counters(redis_conn, s)["uploads_failed"] == 1
    status = run_gravanois(s, "status")
    assert "upload_credentials" in status.stdout and "GN_DEVICE_SECRET" in status.stdout, status.stdout
    assert status.returncode != 0
    # The operator fixes the secret and requeues: delivered, alarm gone.
    fixed = make_settings(**upload_overrides(backend.base, keep_after_upload=True))
    FailedJobRegistry(queue=queue(fixed, "upload", redis_conn)).requeue(job.id)
    run_worker(fixed, redis_conn, monkeypatch)
    assert len(backend.finalized()) == 1 and len(backend.clips) == 1
    assert redis_conn.hget(keys.alarms(s.device_id), upload.ALARM) is None


def test_injected_signature_mismatch_is_a_credential_error(
    setup: Setup, backend: BackendServer, redis_conn: redis.Redis, monkeypatch: pytest.MonkeyPatch
) -> None:
    s, sc = setup(keep_after_upload=True)
    backend.inject("signature_mismatch")
    job = enqueue(s, redis_conn, sc)
    run_worker(s, redis_conn, monkeypatch)
    job = Job.fetch(job.id, connection=redis_conn, serializer=SERIALIZER)
    assert job.get_status() == "failed" and backend.calls["register"] == 1 and len(backend.clips) == 0
    raised = redis_conn.hget(keys.alarms(s.device_id), upload.ALARM)
    assert raised is not None and "signature_mismatch" in json.loads(raised)["message"]


def test_finalize_409_counts_as_done(
    setup: Setup, backend: BackendServer, redis_conn: redis.Redis, monkeypatch: pytest.MonkeyPatch
) -> None:
    s, sc = setup(keep_after_upload=True)
    enqueue(s, redis_conn, sc)
    run_worker(s, redis_conn, monkeypatch)
    # As if the finalize's answer had been lost: the sidecar still says "uploaded, not finalized".
    data = sidecar.load(sc)
    remote = data["remote"]
    remote.pop("finalized_at")
    sidecar.update(sc, remote=remote, status="watermarked")
    enqueue(s, redis_conn, sc)
    run_worker(s, redis_conn, monkeypatch)
    assert backend.calls["finalize"] == 2 and backend.calls["register"] == 1 and backend.calls["put"] == 1
    assert sidecar.load(sc)["status"] == "uploaded" and len(backend.clips) == 1


def test_uploads_off_leave_the_highlight_alone(
    make_settings: Callable[..., Settings],
    highlight_media: tuple[Path, Path],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    s = make_settings()
    assert not s.upload_enabled
    sc = make_highlight(s, *highlight_media)
    for k in [k for k in upload_overrides("")]:
        monkeypatch.delenv(f"GN_{k.upper()}", raising=False)
    monkeypatch.setenv("GN_DEVICE_ID", s.device_id)
    monkeypatch.setenv("GN_DATA_DIR", str(s.data_dir))
    monkeypatch.setenv("GN_REDIS_URL", s.redis_url)
    from worker import context

    context.install(s)
    assert upload.upload_highlight(str(sc)) == "disabled"
    assert sidecar.load(sc)["status"] == "watermarked" and Path(sidecar.load(sc)["wm_path"]).exists()


def test_a_second_job_on_a_highlight_being_uploaded_stands_aside(
    setup: Setup, backend: BackendServer, redis_conn: redis.Redis, monkeypatch: pytest.MonkeyPatch
) -> None:
    s, sc = setup(keep_after_upload=True)
    press_id = sidecar.load(sc)["press_id"]
    redis_conn.set(keys.upload_lock(s.device_id, press_id), "another-job", ex=60)
    job = enqueue(s, redis_conn, sc)
    run_worker(s, redis_conn, monkeypatch)
    job = Job.fetch(job.id, connection=redis_conn, serializer=SERIALIZER)
    assert job.return_value() == "busy" and backend.calls["register"] == 0
    # The lock's owner (or a retry of it, same job id) goes ahead.
    redis_conn.set(keys.upload_lock(s.device_id, press_id), job.id, ex=60)
    enqueue(s, redis_conn, sc)
    run_worker(s, redis_conn, monkeypatch)
    assert len(backend.finalized()) == 1
    assert redis_conn.get(keys.upload_lock(s.device_id, press_id)) is None


def test_job_timeout_covers_the_put_deadline(make_settings: Callable[..., Settings]) -> None:
    slow = make_settings(upload_kbps=256)
    assert upload.job_timeout(slow, 30_000_000) > upload.put_timeout(30_000_000, 256)
    assert upload.job_timeout(make_settings(), 1000) == upload.DEFAULT_JOB_TIMEOUT
