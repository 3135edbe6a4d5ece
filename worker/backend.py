"""The backend's HTTP client: HMAC-signed register/finalize calls and the pre-signed PUT.

Contract: the backend's upload API, as docs/upload.md describes it. Every answer is classified into an
`AnswerMeaning` (done, transient, closed hours, credentials, already finalized, URL expired, object mismatch),
so `worker.upload` decides what to do from one value. Nothing here logs a URL, a secret or a signature.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import re
import time
import uuid
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, Protocol
from urllib.parse import quote, urlsplit

import requests

from common.log import event, get_logger, redact
from common.settings import Settings

log = get_logger(__name__)

# Seconds to open a connection, and to wait for an answer to a register/finalize call.
CONNECT_TIMEOUT = 10.0
API_TIMEOUT = 30.0
# Error codes that mean the device's credentials are wrong or revoked (docs/upload.md).
CREDENTIAL_CODES = frozenset(
    {
        "missing_headers",
        "invalid_timestamp",
        "invalid_nonce",
        "invalid_body_hash",
        "invalid_signature_format",
        "device_not_found",
        "device_revoked",
        "client_mismatch",
        "missing_raw_body",
        "integrity_failed",
        "signature_mismatch",
        "device_not_authenticated",
    }
)
CLOSED_CODE = "request_outside_allowed_time_window"
_XML_CODE = re.compile(r"<Code>([^<]{1,100})</Code>")


class AnswerMeaning(StrEnum):
    """What an answer means for the upload job."""

    DONE = "done"
    TRANSIENT = "transient"  # timeouts, connection errors, 5xx, 429, anything unknown: retry with backoff
    CLOSED = "closed_hours"  # 403 outside the venue's hours: try again when it opens
    CREDENTIALS = "credentials"  # the device's credentials are wrong or revoked: stop, raise an alarm
    ALREADY_FINALIZED = "already_finalized"  # 409 on finalize: an earlier try got through
    URL_EXPIRED = "url_expired"  # the storage refused the pre-signed PUT (expired): register again
    MISMATCH = "mismatch"  # 422 on finalize: the stored object is not our file: upload again


class Step(StrEnum):
    """The three remote steps, in order."""

    REGISTER = "register"
    PUT = "put"
    FINALIZE = "finalize"


@dataclass
class Answer:
    """One backend answer, reduced to what the job needs (never the request URL)."""

    step: Step
    meaning: AnswerMeaning
    status: int = 0
    code: str = ""
    message: str = ""
    request_id: str = ""
    data: dict[str, Any] = field(default_factory=dict)
    etag: str = ""

    def describe(self) -> str:
        """A one-line, secret-free description for the sidecar and the logs."""
        what = f"HTTP {self.status}" if self.status else "no answer"
        code = f" {self.code}" if self.code else ""
        msg = f": {self.message}" if self.message else ""
        return redact(f"{self.step.value}: {what}{code}{msg}")[:300]


class Body(Protocol):
    """A file-like request body with a known length (so the PUT carries Content-Length)."""

    def read(self, n: int = -1) -> bytes: ...

    def __len__(self) -> int: ...


class BodyAborted(Exception):
    """Raised by a streaming body to abandon a PUT (e.g. its deadline passed)."""


# ---- signing (pure)


def body_sha256(body: bytes) -> str:
    """Base64 of the SHA-256 of the raw body, as `X-Body-SHA256` wants it."""
    return base64.b64encode(hashlib.sha256(body).digest()).decode()


def string_to_sign(method: str, path: str, timestamp: str, nonce: str, body_hash: str) -> str:
    """`v1:{METHOD}:{PATH}:{timestamp}:{nonce}:{bodySha256}`."""
    return f"v1:{method.upper()}:{path}:{timestamp}:{nonce}:{body_hash}"


def signature(secret: str, text: str) -> str:
    """Base64 of HMAC-SHA256 over `text` with the device secret."""
    return base64.b64encode(hmac.new(secret.encode(), text.encode(), hashlib.sha256).digest()).decode()


def signed_headers(
    settings: Settings,
    method: str,
    path: str,
    body: bytes,
    timestamp: int | None = None,
    nonce: str | None = None,
) -> dict[str, str]:
    """The headers of a signed backend call; the timestamp is UTC epoch seconds, the nonce a UUID4."""
    ts = str(int(time.time()) if timestamp is None else timestamp)
    nonce = nonce or str(uuid.uuid4())
    digest = body_sha256(body)
    headers = {
        "X-Device-Id": settings.device_id,
        "X-Client-Id": settings.client_id,
        "X-Timestamp": ts,
        "X-Nonce": nonce,
        "X-Body-SHA256": digest,
        "X-Signature": signature(settings.device_secret, string_to_sign(method, path, ts, nonce, digest)),
    }
    if settings.api_token:
        headers["Authorization"] = f"Bearer {settings.api_token}"
    return headers


# ---- answers (pure)


def classify(step: Step, status: int, code: str) -> AnswerMeaning:
    """Map an HTTP status and error code to what the job does next (the failure policy in docs/upload.md)."""
    if 200 <= status < 300:
        return AnswerMeaning.DONE
    if code in CREDENTIAL_CODES:
        return AnswerMeaning.CREDENTIALS
    if status == 403 and code == CLOSED_CODE:
        return AnswerMeaning.CLOSED
    if step is Step.FINALIZE and status == 409:
        return AnswerMeaning.ALREADY_FINALIZED
    if step is Step.FINALIZE and status == 422:
        return AnswerMeaning.MISMATCH
    if step is Step.PUT and status == 403:
        # The storage's own refusal (AccessDenied "Request has expired", SignatureDoesNotMatch): only a
        # new pre-signed URL can help.
        return AnswerMeaning.URL_EXPIRED
    if step is not Step.PUT and status == 401:
        return AnswerMeaning.CREDENTIALS
    return AnswerMeaning.TRANSIENT


def parse_envelope(step: Step, resp: requests.Response) -> Answer:
    """Read `{success, data, message, error: {code, details}, requestId}` (or S3's XML) into an Answer."""
    code = message = request_id = ""
    data: dict[str, Any] = {}
    text = resp.text if resp.content else ""
    try:
        doc = json.loads(text) if text else {}
    except ValueError:
        doc = None
    if isinstance(doc, dict):
        err = doc.get("error")
        if isinstance(err, dict):
            code = str(err.get("code") or "")
        elif isinstance(err, str) and re.fullmatch(r"[a-z_]{3,60}", err):
            code = err
        message = str(doc.get("message") or "")
        request_id = str(doc.get("requestId") or "")
        if isinstance(doc.get("data"), dict):
            data = doc["data"]
    elif text:
        m = _XML_CODE.search(text)
        code = m.group(1) if m else ""
    return Answer(
        step=step,
        meaning=classify(step, resp.status_code, code),
        status=resp.status_code,
        code=code,
        message=redact(message)[:200],
        request_id=request_id,
        data=data,
        etag=resp.headers.get("ETag", ""),
    )


def no_answer(step: Step, exc: BaseException) -> Answer:
    """A call that got no answer (timeout, refused, dropped): transient.

    Only the exception's type is kept: requests' messages quote the request URL, which for the PUT is
    the pre-signed URL.
    """
    kind = "timeout" if isinstance(exc, requests.Timeout | BodyAborted) else "connection_error"
    return Answer(step=step, meaning=AnswerMeaning.TRANSIENT, code=kind, message=type(exc).__name__)


# ---- the client


class BackendClient:
    """One `requests.Session` (connection reuse) for the three steps of every upload of this process."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.base = settings.api_base.rstrip("/")
        self.session = requests.Session()
        self.session.headers["User-Agent"] = f"gravanois-capture/{settings.device_id}"

    def register_path(self) -> str:
        """URL of step 1 (client and venue ids quoted)."""
        s = self.settings
        return f"{self.base}/api/videos/metadados/client/{quote(s.client_id, safe='')}/venue/{quote(s.venue_id, safe='')}"  # noqa: E501

    def register(self, payload: dict[str, Any]) -> Answer:
        """Step 1: register the clip; `data.clip` holds clip_id and upload_url when done."""
        return self._signed_post(Step.REGISTER, self.register_path(), payload)

    def finalize(self, clip_id: str, payload: dict[str, Any]) -> Answer:
        """Step 3: tell the backend the object is in place (it checks size and ETag)."""
        return self._signed_post(
            Step.FINALIZE, f"{self.base}/api/videos/{quote(clip_id, safe='')}/uploaded", payload
        )

    def put(self, url: str, body: Body, timeout: float) -> Answer:
        """Step 2: stream `body` to the pre-signed URL (Content-Type video/mp4, Content-Length set)."""
        started = time.monotonic()
        try:
            resp = self.session.put(
                url,
                data=body,
                headers={"Content-Type": "video/mp4"},
                timeout=(CONNECT_TIMEOUT, timeout),
            )
        except (requests.RequestException, BodyAborted, OSError) as exc:
            answer = no_answer(Step.PUT, exc)
        else:
            answer = parse_envelope(Step.PUT, resp)
        self._log(answer, started, bytes=len(body))
        return answer

    def close(self) -> None:
        """Close the pooled connections."""
        self.session.close()

    def _signed_post(self, step: Step, url: str, payload: dict[str, Any]) -> Answer:
        raw = json.dumps(payload, separators=(",", ":"), ensure_ascii=False).encode()
        headers = signed_headers(self.settings, "POST", urlsplit(url).path, raw)
        headers["Content-Type"] = "application/json"
        started = time.monotonic()
        try:
            resp = self.session.post(url, data=raw, headers=headers, timeout=(CONNECT_TIMEOUT, API_TIMEOUT))
        except requests.RequestException as exc:
            answer = no_answer(step, exc)
        else:
            answer = parse_envelope(step, resp)
        self._log(answer, started)
        return answer

    def _log(self, answer: Answer, started: float, **extra: Any) -> None:
        event(
            log,
            "backend_answer",
            step=answer.step.value,
            outcome=answer.meaning.value,
            status=answer.status,
            code=answer.code,
            request_id=answer.request_id,
            ms=round((time.monotonic() - started) * 1000),
            **extra,
        )
