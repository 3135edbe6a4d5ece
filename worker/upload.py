"""Upload stage: deliver a finished highlight to the backend (register → PUT → finalize), resumable.

Each step's result is saved in the sidecar's `remote` before the next step starts, so a retry (RQ
Retry, a killed worker, a requeue) resumes at the first step not done and never registers the clip
twice; it registers again only when the pre-signed URL has expired and the upload had not completed.
What each backend answer means is decided in `worker.backend.classify`; what to do about it, here.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import time
import uuid
from collections.abc import Callable
from typing import Any, BinaryIO, NoReturn
from urllib.parse import urlsplit

import redis
from rq import get_current_job

from common import hours, keys, sidecar
from common.alarms import clear_alarm, raise_alarm
from common.counters import incr
from common.events import EventType
from common.ffmpeg import probe
from common.fsutil import sha256_file
from common.highlights import note_highlight
from common.log import event, get_logger, register_secret
from common.pipeline import STAGES, HighlightState, PermanentError, SidecarStatus, Stage, enqueue
from common.settings import Settings
from common.timeutil import compact, iso, now, parse_iso
from worker import context, files
from worker.backend import Answer, AnswerMeaning, BackendClient, BodyAborted

log = get_logger(__name__)

# The alarm this module raises.
ALARM = keys.Alarm.UPLOAD_CREDENTIALS
# The pre-signed URL really expires 1 h after registration, whatever `expires_hint_hours` says.
URL_LIFETIME = 3600.0
# A PUT is not started on a URL this close to its expiry: it could die half-way.
URL_MARGIN = 120.0
# Outside opening hours with no GN_OPEN_HOURS to say when the venue opens: try again this much later.
CLOSED_RETRY = 900.0
# Start a little after the opening time, for clocks that disagree by a minute.
OPENING_SLACK = 60.0
# The PUT's deadline: this many seconds plus the file at the slowest rate we accept (bytes/s).
PUT_BASE_SECONDS = 60.0
PUT_MIN_RATE = 32 * 1024
CHUNK = 64 * 1024
DEFAULT_JOB_TIMEOUT = STAGES[Stage.UPLOAD].timeout


class UploadError(Exception):
    """A transient failure: RQ's Retry (GN_MAX_ATTEMPTS, GN_RETRY_INTERVALS) tries again later."""


class UploadBlocked(PermanentError):
    """A failure retrying cannot fix (credentials, missing file): the job fails without more retries."""


def check_config(settings: Settings) -> None:
    """Stop the worker at start when uploads are configured with an unusable GN_API_BASE."""
    if not settings.upload_enabled:
        return
    parts = urlsplit(settings.api_base)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise ValueError(
            f"GN_API_BASE={settings.api_base!r} is not valid: use the backend's URL, like https://api.example.com"
        )


def upload_highlight(sidecar_name: str) -> str:
    """RQ job: upload the finished highlight whose sidecar is `sidecar_name`; returns the backend clip id.

    Returns "rescheduled" when the venue is closed, and "missing"/"disabled"/"busy" when there is
    nothing to do here.
    """
    settings = context.settings()
    conn = context.connection()
    for secret in settings.secrets():
        register_secret(secret)
    highlight = files.from_job_arg(settings, sidecar_name)
    path = highlight.sidecar
    if not path.is_file():
        event(log, "upload_missing", sidecar=path.name)
        return "missing"
    if (sidecar.load(path).get("remote") or {}).get("finalized_at"):
        return "done"
    if not settings.upload_enabled:
        event(log, "upload_disabled", sidecar=path.name)
        return "disabled"
    job = get_current_job()
    timeout = (job.timeout if job is not None else None) or DEFAULT_JOB_TIMEOUT
    lock = keys.upload_lock(settings.device_id, highlight.press_id)
    # The lock holds the job id: a retry of a job whose worker was killed takes its own lock back.
    token = job.id if job is not None else uuid.uuid4().hex
    if not conn.set(lock, token, nx=True, ex=int(timeout) + 60) and conn.get(lock) != token.encode():
        # Another job works on this highlight right now (a requeue beside a reschedule): it finishes it.
        event(log, "upload_busy", sidecar=path.name)
        return "busy"
    conn.expire(lock, int(timeout) + 60)
    client = BackendClient(settings)
    try:
        return Upload(settings, conn, highlight, client).run()
    finally:
        client.close()
        with contextlib.suppress(redis.RedisError):
            if conn.get(lock) == token.encode():
                conn.delete(lock)


class Upload:
    """One attempt at one highlight: the three steps, each persisted in the sidecar as it completes."""

    def __init__(
        self, settings: Settings, conn: redis.Redis, highlight: files.HighlightFiles, client: BackendClient
    ) -> None:
        self.settings, self.conn, self.client = settings, conn, client
        self.highlight, self.path = highlight, highlight.sidecar
        self.data = sidecar.load(self.path)
        self.remote: dict[str, Any] = dict(self.data.get("remote") or {})
        self.press_id = highlight.press_id
        self.at = parse_iso(self.data["press_at"]) if self.data.get("press_at") else now()
        self.video = highlight.video
        if self.remote.get("upload_url"):
            register_secret(self.remote["upload_url"])

    def run(self) -> str:
        """Resume at the first step not done; returns the clip id once finalized."""
        self.note(HighlightState.UPLOADING)
        if not self.video.is_file():
            return self.block(
                f"the highlight video {self.video.name} is missing from the output dir", alarm=False
            )
        self.ensure_digest()
        registered_now = False
        while not self.remote.get("uploaded_at"):
            if not self.url_usable():
                if registered_now:
                    return self.stop_transient(
                        "the backend handed out an upload URL that was already expired"
                    )
                answer = self.register()
                if answer.meaning is not AnswerMeaning.DONE:
                    return self.stop(answer)
                registered_now = True
            answer = self.put()
            if answer.meaning is AnswerMeaning.URL_EXPIRED:
                # The storage refused the URL: only a new registration gives a new one.
                self.remote["upload_url_expires_at"] = iso()
                self.save()
                continue
            if answer.meaning is not AnswerMeaning.DONE:
                return self.stop(answer)
        answer = self.finalize()
        if answer.meaning not in (AnswerMeaning.DONE, AnswerMeaning.ALREADY_FINALIZED):
            return self.stop(answer)
        return self.finished()

    # ---- the three steps

    def url_usable(self) -> bool:
        """True while the registration's URL can still take the PUT."""
        if not (self.remote.get("clip_id") and self.remote.get("upload_url")):
            return False
        expires = self.remote.get("upload_url_expires_at")
        if not expires:
            return False
        return now() < parse_iso(expires) - URL_MARGIN

    def register(self) -> Answer:
        """Step 1; the clip id and URL are saved before anything else happens."""
        meta = self.meta()
        payload = {
            "venue_id": self.settings.venue_id,
            "duration_sec": meta.get("duration_sec"),
            "captured_at": self.data.get("press_at") or iso(self.at),
            "meta": meta,
            "sha256": self.remote["sha256"],
        }
        answer = self.client.register(payload)
        if answer.meaning is not AnswerMeaning.DONE:
            return answer
        nested = answer.data.get("clip")
        clip = nested if isinstance(nested, dict) else answer.data
        clip_id, url = str(clip.get("clip_id") or ""), str(clip.get("upload_url") or "")
        if not clip_id or not url:
            return Answer(
                answer.step, AnswerMeaning.TRANSIENT, answer.status, "bad_answer", "no clip_id/upload_url"
            )
        register_secret(url)
        registered = now()
        lifetime = URL_LIFETIME
        with contextlib.suppress(KeyError, TypeError, ValueError):
            lifetime = min(URL_LIFETIME, float(clip["expires_hint_hours"]) * 3600) or URL_LIFETIME
        if self.remote.get("clip_id"):
            # An earlier registration whose URL expired before the upload: kept for the support desk.
            self.remote.setdefault("expired_clip_ids", []).append(self.remote["clip_id"])
        for stale in ("etag", "uploaded_at", "last_error"):
            self.remote.pop(stale, None)
        self.remote.update(
            clip_id=clip_id,
            upload_url=url,
            upload_url_expires_at=iso(registered + lifetime),
            registered_at=iso(registered),
            contract_type=clip.get("contract_type"),
            storage_path=clip.get("storage_path"),
        )
        self.save()
        clear_alarm(self.conn, self.settings, ALARM)
        event(log, "upload_registered", press_id=self.press_id, clip_id=clip_id)
        return answer

    def put(self) -> Answer:
        """Step 2: stream the file; the answer's ETag must be the MD5 of the bytes sent."""
        size = int(self.remote["size_bytes"])
        rate = self.settings.upload_kbps * 1000 / 8
        job = get_current_job()
        with open(self.video, "rb") as fh:
            body = StreamBody(fh, size, rate, put_timeout(size, self.settings.upload_kbps), _progress(job))
            answer = self.client.put(self.remote["upload_url"], body, PUT_BASE_SECONDS)
        if answer.meaning is not AnswerMeaning.DONE:
            return answer
        if body.sent != size or answer.etag.strip('"').lower() != body.md5.hexdigest():
            return Answer(
                answer.step, AnswerMeaning.TRANSIENT, answer.status, "etag_mismatch", "stored object differs"
            )
        self.remote.update(etag=answer.etag, uploaded_at=iso())
        self.save()
        incr(self.conn, self.settings, keys.Counter.BYTES_UPLOADED, size)
        event(log, "upload_put_done", press_id=self.press_id, clip_id=self.remote["clip_id"], bytes=size)
        return answer

    def finalize(self) -> Answer:
        """Step 3; a 422 means the stored object is not our file, so the next try uploads again."""
        payload = {
            "size_bytes": int(self.remote["size_bytes"]),
            "sha256": self.remote["sha256"],
            "etag": self.remote["etag"],
        }
        answer = self.client.finalize(self.remote["clip_id"], payload)
        if answer.meaning is AnswerMeaning.MISMATCH:
            for stale in ("etag", "uploaded_at"):
                self.remote.pop(stale, None)
            self.save()
        return answer

    def finished(self) -> str:
        """Record the confirmed finalize, count it, and delete the local files unless told to keep them."""
        clip_id: str = self.remote["clip_id"]
        self.remote["finalized_at"] = iso()
        self.remote.pop("upload_url", None)  # useless now, and it grants write access until it expires
        self.remote.pop("last_error", None)
        self.save(status=SidecarStatus.UPLOADED)
        incr(self.conn, self.settings, STAGES[Stage.UPLOAD].done_counter)
        clear_alarm(self.conn, self.settings, ALARM)
        kept = self.settings.keep_after_upload
        self.note(HighlightState.DONE, EventType.HIGHLIGHT_UPLOADED, clip_id=clip_id, kept=str(kept).lower())
        event(log, "upload_done", press_id=self.press_id, clip_id=clip_id, kept=kept)
        if not kept:
            for f in (self.video, self.highlight.thumbnail, self.highlight.vertical, self.path):
                with contextlib.suppress(FileNotFoundError):
                    f.unlink()
        return clip_id

    # ---- failures

    def stop(self, answer: Answer) -> str:
        """Act on a step that did not succeed: reschedule, block, or raise for RQ's retry."""
        if answer.meaning is AnswerMeaning.CLOSED:
            return self.reschedule(answer)
        if answer.meaning is AnswerMeaning.CREDENTIALS:
            return self.block(
                f"the backend refused this box's credentials ({answer.code or answer.status}): check "
                "GN_DEVICE_ID, GN_DEVICE_SECRET, GN_CLIENT_ID and GN_API_TOKEN, "
                "then requeue the failed uploads with `gravanois failed`",
                alarm=True,
                error=answer.describe(),
            )
        return self.stop_transient(answer.describe())

    def stop_transient(self, error: str) -> NoReturn:
        """Raise for RQ's Retry; the failure policy records the attempt (and the last one)."""
        raise UploadError(error)

    def block(self, reason: str, alarm: bool, error: str = "") -> NoReturn:
        """Fail without retrying (retries would fail the same way); the files stay where they are."""
        self.save(status=SidecarStatus.UPLOAD_BLOCKED)
        if alarm:
            raise_alarm(self.conn, self.settings, ALARM, f"Uploads stopped: {reason}.")
        event(log, "upload_blocked", logging.ERROR, press_id=self.press_id, error=error or reason)
        raise UploadBlocked(f"upload of {self.path.name} stopped: {error or reason}")

    def reschedule(self, answer: Answer) -> str:
        """The venue is closed: a new job at the next opening time (not a failure, no retry used)."""
        when = next_opening(self.settings, now()) or now() + CLOSED_RETRY
        job, _ = enqueue(
            self.settings,
            self.conn,
            Stage.UPLOAD,
            self.path.name,
            press_id=self.press_id,
            at=self.at,
            when=when,
            timeout=job_timeout(self.settings, int(self.remote.get("size_bytes") or 0)),
            suffix=f"open{compact(when)}",
        )
        job_id = job.id
        self.remote["next_try_at"] = iso(when)
        self.remote["last_error"] = answer.describe()
        self.save()
        self.note(HighlightState.UPLOADING, next_try_at=iso(when))
        event(log, "upload_closed_hours", press_id=self.press_id, next_try_at=iso(when), job_id=job_id)
        return "rescheduled"

    # ---- helpers

    def ensure_digest(self) -> None:
        """SHA-256 and size of the file to upload (the sidecar's may describe the raw clip)."""
        size = self.video.stat().st_size
        if self.remote.get("sha256") and self.remote.get("size_bytes") == size:
            return
        self.remote.update(sha256=sha256_file(self.video), size_bytes=size)
        self.save()

    def meta(self) -> dict[str, Any]:
        """codec, width, height, fps, duration_sec of the uploaded file (from the sidecar, else ffprobe)."""
        meta = self.data.get("meta_wm") or self.data.get("meta")
        if not isinstance(meta, dict) or "duration_sec" not in meta:
            meta = probe(self.video).as_dict()
        return {k: meta.get(k) for k in sidecar.META_FIELDS}

    def save(self, **top: Any) -> None:
        """Persist `remote` (and top-level fields) in the sidecar, atomically."""
        self.data = sidecar.update(self.path, remote=self.remote, **top)

    def note(self, state: HighlightState, fleet: EventType | None = None, **fields: str) -> None:
        """The highlight's state for `gravanois status` (Redis trouble must not fail the upload)."""
        with contextlib.suppress(redis.RedisError):
            note_highlight(self.conn, self.settings, self.press_id, self.at, fleet, state=state, **fields)


class StreamBody:
    """The file as a PUT body: read in chunks, MD5 computed on the way (the ETag check), throttled to
    GN_UPLOAD_KBPS by a token bucket, and abandoned when its deadline passes.

    It has `read` and `__len__` but no `__iter__`, so requests sends Content-Length, not chunks (a
    pre-signed S3 PUT refuses chunked bodies).
    """

    def __init__(
        self,
        fh: BinaryIO,
        size: int,
        rate: float,
        seconds: float,
        progress: Callable[[int, int], None] | None = None,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.fh, self.size, self.rate = fh, size, rate
        self.clock, self.sleep, self.progress = clock, sleep, progress
        self.deadline = clock() + seconds
        self.md5 = hashlib.md5(usedforsecurity=False)
        self.sent = 0
        # A quarter second of burst keeps the average at the limit without long stalls on a Pi.
        self.burst = max(rate / 4, float(CHUNK)) if rate else 0.0
        self.tokens, self.last = self.burst, clock()

    def __len__(self) -> int:
        return self.size

    def read(self, n: int = -1) -> bytes:
        """The next block (at most CHUNK bytes), after waiting for the bandwidth it may use."""
        if self.clock() > self.deadline:
            raise BodyAborted("upload deadline passed")
        block = self.fh.read(CHUNK if n is None or n < 0 else min(n, CHUNK))
        if not block:
            return b""
        self._throttle(len(block))
        self.md5.update(block)
        self.sent += len(block)
        if self.progress is not None:
            self.progress(self.sent, self.size)
        return block

    def _throttle(self, n: int) -> None:
        if not self.rate:
            return
        t = self.clock()
        self.tokens = min(self.burst, self.tokens + (t - self.last) * self.rate) - n
        self.last = t
        if self.tokens < 0:
            self.sleep(-self.tokens / self.rate)
            self.tokens, self.last = 0.0, self.clock()


def put_timeout(size: int, kbps: int) -> float:
    """Seconds a PUT of `size` bytes may take: a base plus the file at the slowest accepted rate."""
    rate = PUT_MIN_RATE if not kbps else min(PUT_MIN_RATE, kbps * 1000 / 8 / 2)
    return PUT_BASE_SECONDS + size / rate


def job_timeout(settings: Settings, size_bytes: int) -> int:
    """An RQ job timeout that lets the PUT of `size_bytes` run to its own deadline (for enqueuers)."""
    return max(DEFAULT_JOB_TIMEOUT, int(put_timeout(size_bytes, settings.upload_kbps) + 2 * 60))


def next_opening(settings: Settings, ts: float) -> float | None:
    """Epoch seconds of the venue's next opening after `ts` (GN_OPEN_HOURS in GN_TIMEZONE), plus a slack.

    None when no hours are set, or when the hours say the venue is open now (the backend disagrees:
    try again soon rather than tomorrow).
    """
    venue = hours.of(settings)
    opening = venue.next_opening(ts) if not venue.is_open(ts) else None
    return opening + OPENING_SLACK if opening is not None else None


def _progress(job: Any) -> Callable[[int, int], None] | None:
    """Report the PUT's percent in `job.meta["progress"]` (for `status`), at most once a second."""
    if job is None:
        return None
    last = [0.0]

    def report(sent: int, size: int) -> None:
        t = time.monotonic()
        if t - last[0] >= 1.0 or sent >= size:
            last[0] = t
            job.meta["progress"] = round(100 * sent / max(size, 1))
            with contextlib.suppress(redis.RedisError):
                job.save_meta()

    return report
