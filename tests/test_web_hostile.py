"""Hostile requests against a real `gravanois web`: each gets a clean 4xx, and the process keeps serving.

Requests go out on raw sockets, byte for byte as written here, so no client library tidies a `..` or
an encoded slash away before the server sees it.
"""

from __future__ import annotations

import socket
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from common.settings import Settings
from harness.finished import Finished, finished_highlight
from tests.web_helpers import WebProc


@pytest.fixture(scope="module")
def box(
    tmp_path_factory: pytest.TempPathFactory, redis_server
) -> Iterator[tuple[WebProc, Finished, Settings]]:
    from common.settings import load_settings

    tmp = tmp_path_factory.mktemp("hostile")
    s = load_settings(
        {
            "device_id": f"hostile-{tmp.name[-6:]}",
            "data_dir": tmp / "data",
            "buffer_dir": tmp / "buffer",
            "redis_url": redis_server.url,
            "web_admin_password": "pw-hostile-1",
            "web_press": True,
            "log_format": "json",
        },
        env_file=None,
    )
    clip = finished_highlight(s, redis.Redis.from_url(s.redis_url))
    # a file beside the outputs that must never be reachable
    (s.data_dir / "secret.txt").write_text("not for players")
    with WebProc(s, tmp / "web.log") as proc:
        yield proc, clip, s


def raw(port: int, request: bytes, timeout: float = 10) -> tuple[int, bytes]:
    """Send `request` as is; (status code, whole answer). Status 0: the server closed without one.

    Like a careful client, it sends the head first and reads an early answer (a 413 for a declared
    body too large) before sending the body; a server may close a connection it refuses.
    """
    head, sep, body = request.partition(b"\r\n\r\n")
    chunks: list[bytes] = []
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        try:
            sock.sendall(head + sep)
            if body:
                sock.settimeout(0.5)
                try:
                    early = sock.recv(65536)
                except TimeoutError:
                    early = None
                sock.settimeout(timeout)
                if early is None:
                    sock.sendall(body)
                else:
                    chunks.append(early)
            while True:
                data = sock.recv(65536)
                if not data:
                    break
                chunks.append(data)
        except (ConnectionResetError, BrokenPipeError, TimeoutError):
            pass
    answer = b"".join(chunks)
    if not answer.startswith(b"HTTP/1.1 "):
        return 0, answer
    return int(answer[9:12]), answer


def get(path: str, extra: str = "") -> bytes:
    return f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n{extra}\r\n".encode()


def post(path: str, body: bytes, extra: str = "") -> bytes:
    head = f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n{extra}"
    return head.encode() + f"Content-Length: {len(body)}\r\n\r\n".encode() + body


# (what, request builder given the clip id, acceptable statuses)
CASES = [
    ("dot-dot in the id", lambda h: get("/h/../../../etc/passwd"), {404}),
    ("dot-dot id alone", lambda h: get("/h/.."), {404}),
    ("encoded dot-dot", lambda h: get("/h/%2e%2e/%2e%2e/etc/passwd"), {404}),
    ("encoded slash", lambda h: get("/h/..%2f..%2fsecret.txt"), {404}),
    ("double-encoded slash", lambda h: get("/h/..%252f..%252fsecret.txt/video.mp4"), {404}),
    ("backslashes", lambda h: get("/h/..\\..\\secret.txt/video.mp4"), {400, 404}),
    ("absolute path as id", lambda h: get("/h//etc/passwd/video.mp4"), {404}),
    ("encoded absolute path", lambda h: get("/h/%2fetc%2fpasswd/video.mp4"), {404}),
    ("NUL byte", lambda h: get("/h/cam1-20250101T000000000Z%00.mp4/video.mp4"), {404}),
    ("unknown id", lambda h: get("/h/cam1-20000101T000000000Z/video.mp4"), {404}),
    ("impossible date id", lambda h: get("/h/cam1-20251399T256199999Z"), {404}),
    ("sidecar name as id", lambda h: get(f"/h/highlight_{h}.json"), {404}),
    ("unknown camera", lambda h: get("/c/ghost"), {404}),
    ("camera dot-dot", lambda h: get("/c/..%2f..%2fetc/poster"), {404}),
    ("static dot-dot", lambda h: get("/static/..%2fapp.py"), {404}),
    ("static unknown", lambda h: get("/static/records.py"), {404}),
    ("negative range", lambda h: get(f"/h/{h}/video.mp4", "Range: bytes=-5-10\r\n"), {400, 416}),
    ("reversed range", lambda h: get(f"/h/{h}/video.mp4", "Range: bytes=2000-1000\r\n"), {400, 416}),
    ("huge range", lambda h: get(f"/h/{h}/video.mp4", f"Range: bytes={10**30}-{10**31}\r\n"), {416}),
    ("range past end", lambda h: get(f"/h/{h}/video.mp4", "Range: bytes=999999999-\r\n"), {416}),
    ("bad range unit", lambda h: get(f"/h/{h}/video.mp4", "Range: lines=1-2\r\n"), {400}),
    ("garbage range", lambda h: get(f"/h/{h}/video.mp4", "Range: bytes=a-b\r\n"), {400}),
    (
        "thousand ranges",
        lambda h: get(f"/h/{h}/video.mp4", "Range: bytes=" + ",".join(["0-1"] * 1000) + "\r\n"),
        {400, 416},
    ),
    ("bad method", lambda h: f"DELETE /h/{h}/video.mp4 HTTP/1.1\r\nHost: x\r\n\r\n".encode(), {405}),
    ("PUT on a page", lambda h: post("/c/cam1", b"x").replace(b"POST", b"PUT", 1), {405}),
    ("TRACE", lambda h: b"TRACE / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n", {405}),
    ("unknown method", lambda h: b"BREW /c/cam1 HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n", {405}),
    ("POST on the clip", lambda h: post(f"/h/{h}/video.mp4", b"x"), {405}),
    ("oversized body", lambda h: post("/admin/login", b"p" * 100_000), {413}),
    (
        "lying content length",
        lambda h: post("/admin/login", b"").replace(b"Length: 0", b"Length: 99999999"),
        {413},
    ),
    (
        "negative content length",
        lambda h: post("/admin/login", b"").replace(b"Length: 0", b"Length: -1"),
        {400},
    ),
    (
        "oversized chunked body",
        lambda h: (
            b"POST /admin/login HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n"
            b"Transfer-Encoding: chunked\r\n\r\n" + b"4000\r\n" + b"x" * 0x4000 + b"\r\n" + b"4000\r\n"
            b"" + b"x" * 0x4000 + b"\r\n0\r\n\r\n"
        ),
        {403, 413},
    ),
    ("web press without the page's header", lambda h: post("/c/cam1/press", b""), {403}),
    ("dashboard POST without a session", lambda h: post("/admin/failed/requeue", b"job=x&csrf=y"), {403}),
    ("dashboard action unknown", lambda h: post("/admin/failed/delete-everything", b"job=x"), {403, 404}),
    ("malformed request line", lambda h: b"GET\r\n\r\n", {400}),
    ("huge header", lambda h: get("/", "X-Big: " + "a" * 200_000 + "\r\n"), {400, 413, 431}),
    (
        "non-UTF-8 path",
        lambda h: b"GET /h/\xff\xfe HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
        {400, 404},
    ),
]


@pytest.mark.parametrize(("what", "build", "allowed"), CASES, ids=[c[0] for c in CASES])
def test_hostile_request_gets_a_clean_4xx(box, what: str, build, allowed: set[int]) -> None:
    web, clip, settings = box
    status, answer = raw(web.port, build(clip.id))
    assert status in allowed, (what, answer[:300])
    # nothing of the box's files or internals in the answer
    assert b"Traceback" not in answer and str(settings.data_dir).encode() not in answer
    assert b"not for players" not in answer and b"root:" not in answer
    # and the process keeps serving
    assert web.request("GET", f"/h/{clip.id}/video.mp4", {"Range": "bytes=0-9"})[0] == 206


def test_still_serving_after_all_of_them(box) -> None:
    web, clip, _ = box
    for _, build, _ in CASES:
        raw(web.port, build(clip.id))
    assert web.proc is not None and web.proc.poll() is None
    status, _, data = web.request("GET", f"/h/{clip.id}/video.mp4", {"Range": "bytes=1000-1999"})
    assert status == 206 and data == clip.video.read_bytes()[1000:2000]
    assert b"Traceback" not in Path(web.log).read_bytes()
