"""A real HTTP server on 127.0.0.1 implementing the backend's upload contract (docs/upload.md).

It verifies the HMAC signature of register/finalize with the device's secret, hands out pre-signed
upload URLs that point back at itself (expiry + signature in the query, like S3), stores PUT bodies and
answers with S3's single-part ETag (quoted MD5), and at finalize checks size, sha256 and ETag.
Faults are injected by name, each for a number of requests:

    register_500        500 on register
    put_drop            read half of the PUT body, then reset the connection
    put_bad_etag        store the PUT body but answer with an ETag that is not its MD5
    finalize_422        422 on finalize (as if the stored object did not match)
    expired_url         the next registration hands out a URL that has already expired
    closed              403 request_outside_allowed_time_window on register
    signature_mismatch  401 signature_mismatch on register
    hold_finalize       finalize waits until `release()`, then drops the connection unanswered
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import re
import socket
import struct
import threading
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

REGISTER = re.compile(r"^/api/videos/metadados/client/(?P<client>[^/]+)/venue/(?P<venue>[^/]+)$")
FINALIZE = re.compile(r"^/api/videos/(?P<clip>[^/]+)/uploaded$")
UPLOAD = re.compile(r"^/upload/(?P<clip>[^/]+)$")
SKEW = 300


@dataclass
class Clip:
    """One registered clip and what the storage holds for it."""

    clip_id: str
    registration: dict[str, Any]
    status: str = "queued"
    data: bytes | None = None
    etag: str = ""
    content_type: str = ""


@dataclass
class BackendServer:
    """The backend plus its storage, on a free loopback port; use as a context manager."""

    secret: str
    device_id: str
    client_id: str
    venue_id: str
    token: str = ""
    url_lifetime: float = 3600.0
    clips: dict[str, Clip] = field(default_factory=dict)
    calls: Counter[str] = field(default_factory=Counter)
    faults: Counter[str] = field(default_factory=Counter)
    signatures: list[str] = field(default_factory=list)
    upload_urls: list[str] = field(default_factory=list)
    nonces: set[str] = field(default_factory=set)
    finalize_waiting: threading.Event = field(default_factory=threading.Event)
    _release: threading.Event = field(default_factory=threading.Event)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _storage_key: bytes = field(default_factory=lambda: uuid.uuid4().bytes)

    def __enter__(self) -> BackendServer:
        server = self

        class Handler(_Handler):
            backend = server

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._release.set()
        self.httpd.shutdown()
        self.httpd.server_close()

    @property
    def base(self) -> str:
        """The GN_API_BASE of this server."""
        return f"http://127.0.0.1:{self.httpd.server_address[1]}"

    def inject(self, fault: str, times: int = 1) -> None:
        """Make the next `times` matching requests fail with `fault`."""
        with self._lock:
            self.faults[fault] += times

    def release(self) -> None:
        """Let a held finalize go (it is dropped unanswered)."""
        self._release.set()

    def take(self, fault: str) -> bool:
        with self._lock:
            if self.faults[fault] > 0:
                self.faults[fault] -= 1
                return True
            return False

    def finalized(self) -> list[Clip]:
        """Clips the backend has confirmed."""
        return [c for c in self.clips.values() if c.status == "finalized"]

    # ---- pre-signed URLs

    def presign(self, clip_id: str, expires: int) -> str:
        sig = hmac.new(self._storage_key, f"{clip_id}:{expires}".encode(), hashlib.sha256).hexdigest()
        return f"{self.base}/upload/{clip_id}?X-Expires={expires}&X-Sig={sig}"

    def presigned_ok(self, clip_id: str, query: dict[str, list[str]]) -> str:
        """ "" when the URL is valid, else S3's error code."""
        try:
            expires = int(query["X-Expires"][0])
            sig = query["X-Sig"][0]
        except (KeyError, ValueError):
            return "AccessDenied"
        good = hmac.new(self._storage_key, f"{clip_id}:{expires}".encode(), hashlib.sha256).hexdigest()
        if not hmac.compare_digest(good, sig):
            return "SignatureDoesNotMatch"
        return "" if time.time() < expires else "AccessDenied"

    # ---- signature check, as the backend does it

    def verify(self, method: str, path: str, headers: Any, body: bytes) -> str:
        """ "" when the request is properly signed, else the backend's error code."""
        names = ("X-Device-Id", "X-Client-Id", "X-Timestamp", "X-Nonce", "X-Body-SHA256", "X-Signature")
        values = {n: headers.get(n) for n in names}
        if any(not v for v in values.values()):
            return "missing_headers"
        if not body:
            return "missing_raw_body"
        if not values["X-Timestamp"].isdigit() or abs(time.time() - int(values["X-Timestamp"])) > SKEW:
            return "invalid_timestamp"
        try:
            if uuid.UUID(values["X-Nonce"]).version != 4:
                return "invalid_nonce"
        except ValueError:
            return "invalid_nonce"
        with self._lock:
            if values["X-Nonce"] in self.nonces:
                return "invalid_nonce"
            self.nonces.add(values["X-Nonce"])
        digest = base64.b64encode(hashlib.sha256(body).digest()).decode()
        if not hmac.compare_digest(digest, values["X-Body-SHA256"]):
            return "invalid_body_hash"
        try:
            if len(base64.b64decode(values["X-Signature"], validate=True)) != 32:
                return "invalid_signature_format"
        except ValueError:
            return "invalid_signature_format"
        if values["X-Device-Id"] != self.device_id:
            return "device_not_found"
        if values["X-Client-Id"] != self.client_id:
            return "client_mismatch"
        if self.token and headers.get("Authorization") != f"Bearer {self.token}":
            return "device_not_authenticated"
        text = f"v1:{method}:{path}:{values['X-Timestamp']}:{values['X-Nonce']}:{digest}"
        good = base64.b64encode(
            hmac.new(self.secret.encode(), text.encode(), hashlib.sha256).digest()
        ).decode()
        self.signatures.append(values["X-Signature"])
        if not hmac.compare_digest(good, values["X-Signature"]):
            return "signature_mismatch"
        return ""


class _Handler(BaseHTTPRequestHandler):
    backend: BackendServer
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:
        pass

    # ---- plumbing

    def _body(self) -> bytes:
        return self.rfile.read(int(self.headers.get("Content-Length") or 0))

    def _send(self, status: int, payload: bytes, ctype: str, headers: dict[str, str] | None = None) -> None:
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(payload)))
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.end_headers()
        self.wfile.write(payload)

    def _envelope(self, status: int, data: Any = None, code: str = "", message: str = "") -> None:
        doc = {
            "success": 200 <= status < 300,
            "data": data,
            "message": message,
            "error": {"code": code, "details": None} if code else None,
            "requestId": str(uuid.uuid4()),
        }
        self._send(status, json.dumps(doc).encode(), "application/json")

    def _s3_error(self, status: int, code: str, message: str) -> None:
        xml = f"<?xml version='1.0'?><Error><Code>{code}</Code><Message>{message}</Message></Error>"
        self._send(status, xml.encode(), "application/xml")

    def _reset(self) -> None:
        """Drop the connection with a TCP reset (SO_LINGER 0), like a network failure."""
        self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        self.close_connection = True
        self.connection.close()

    # ---- routes

    def do_POST(self) -> None:
        b = self.backend
        path = urlsplit(self.path).path
        body = self._body()
        if m := REGISTER.match(path):
            b.calls["register"] += 1
            code = b.verify("POST", path, self.headers, body)
            if code:
                return self._envelope(401, code=code, message="request signature rejected")
            if b.take("signature_mismatch"):
                return self._envelope(401, code="signature_mismatch", message="signature mismatch")
            if b.take("closed"):
                return self._envelope(403, code="request_outside_allowed_time_window", message="venue closed")
            if b.take("register_500"):
                return self._envelope(500, code="internal_error", message="database unavailable")
            return self._register(m["client"], m["venue"], json.loads(body))
        if m := FINALIZE.match(path):
            b.calls["finalize"] += 1
            code = b.verify("POST", path, self.headers, body)
            if code:
                return self._envelope(401, code=code, message="request signature rejected")
            if b.take("hold_finalize"):
                b.finalize_waiting.set()
                b._release.wait(60)
                return self._reset()
            return self._finalize(m["clip"], json.loads(body))
        self._envelope(404, code="not_found")

    def _register(self, client: str, venue: str, doc: dict[str, Any]) -> None:
        b = self.backend
        if client != b.client_id or venue != b.venue_id or doc.get("venue_id") != b.venue_id:
            return self._envelope(403, code="client_mismatch", message="venue of another client")
        if not re.fullmatch(r"[0-9a-f]{64}", str(doc.get("sha256"))) or not doc.get("captured_at"):
            return self._envelope(400, code="invalid_body", message="sha256 and captured_at are required")
        clip_id = str(uuid.uuid4())
        expires = int(time.time() - 5 if b.take("expired_url") else time.time() + b.url_lifetime)
        url = b.presign(clip_id, expires)
        with b._lock:
            b.clips[clip_id] = Clip(clip_id, doc)
            b.upload_urls.append(url)
        clip = {
            "clip_id": clip_id,
            "contract_type": "per_video",
            "storage_path": f"temp/{client}/{venue}/{clip_id}.mp4",
            "upload_url": url,
            "expires_hint_hours": 12,
        }
        self._envelope(201, data={"clip": clip}, message="clip registered")

    def _finalize(self, clip_id: str, doc: dict[str, Any]) -> None:
        b = self.backend
        clip = b.clips.get(clip_id)
        if clip is None:
            return self._envelope(404, code="not_found", message="no such clip")
        if clip.status == "finalized":
            return self._envelope(409, code="invalid_transition", message="clip already finalized")
        if b.take("finalize_422"):
            return self._envelope(422, code="object_mismatch", message="size or etag mismatch")
        # HEAD of the stored object, as the backend does.
        if clip.data is None:
            return self._envelope(422, code="object_missing", message="object not found")
        if doc.get("size_bytes") != len(clip.data) or str(doc.get("etag", "")).strip('"') != clip.etag:
            return self._envelope(422, code="object_mismatch", message="size or etag mismatch")
        stored = hashlib.sha256(clip.data).hexdigest()
        if doc.get("sha256") != stored or stored != clip.registration["sha256"]:
            return self._envelope(422, code="integrity_mismatch", message="sha256 mismatch")
        clip.status = "finalized"
        self._envelope(200, data={"clip_id": clip_id, "status": "uploaded_temp"}, message="uploaded")

    def do_PUT(self) -> None:
        b = self.backend
        parts = urlsplit(self.path)
        m = UPLOAD.match(parts.path)
        if not m or m["clip"] not in b.clips:
            return self._s3_error(404, "NoSuchKey", "The specified key does not exist.")
        b.calls["put"] += 1
        if self.headers.get("Transfer-Encoding"):
            self.close_connection = True
            return self._s3_error(501, "NotImplemented", "Transfer-Encoding is not implemented")
        if self.headers.get("Content-Length") is None:
            return self._s3_error(411, "MissingContentLength", "You must provide the Content-Length header.")
        error = b.presigned_ok(m["clip"], parse_qs(parts.query))
        if error:
            self._body()
            message = "Request has expired" if error == "AccessDenied" else "Signature does not match"
            return self._s3_error(403, error, message)
        if self.headers.get("Content-Type") != "video/mp4":
            self._body()
            return self._s3_error(403, "SignatureDoesNotMatch", "Content-Type is part of the signature")
        length = int(self.headers["Content-Length"])
        if b.take("put_drop"):
            self.rfile.read(length // 2)
            return self._reset()
        data = self.rfile.read(length)
        etag = hashlib.md5(data, usedforsecurity=False).hexdigest()
        clip = b.clips[m["clip"]]
        clip.data, clip.etag, clip.content_type = data, etag, self.headers["Content-Type"]
        b.calls["put_stored"] += 1
        answered = (
            hashlib.md5(data[:-1], usedforsecurity=False).hexdigest() if b.take("put_bad_etag") else etag
        )
        self._send(200, b"", "application/xml", {"ETag": f'"{answered}"'})
