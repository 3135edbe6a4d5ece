"""`gravanois web` over HTTP: a real web process on loopback, a real Redis, highlights made by ffmpeg.

Pages list only finished highlights of configured cameras, clips are served with ranges, the poster
carries the court's QR code, the web press takes the one press path, the dashboard needs a login and a
CSRF token, and nothing secret reaches a page.
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from urllib.parse import urlencode

import pytest
import redis

from common import journal, keys
from common.settings import Settings
from harness.finished import Finished, finished_highlight
from tests.web_helpers import WebProc

PASSWORD = "court-admin-pw-71"
CAM_PASSWORD = "camPw-93x"
SECRET = "device-secret-5521"
TOKEN = "api-token-8823"


@pytest.fixture
def web_settings(make_settings: Callable[..., Settings]) -> Settings:
    return make_settings(
        cameras=json.dumps(
            [
                {"id": "cam1", "source": "testsrc"},
                {"id": "court2", "source": f"rtsp://admin:{CAM_PASSWORD}@127.0.0.1:1/stream"},
            ]
        ),
        web_admin_password=PASSWORD,
        web_press=True,
        device_secret=SECRET,
        api_token=TOKEN,
        cooldown_seconds=0,
    )


@pytest.fixture
def web(web_settings: Settings, tmp_path: Path) -> Iterator[WebProc]:
    with WebProc(web_settings, tmp_path / "web.log") as proc:
        yield proc


@pytest.fixture
def clip(web_settings: Settings, redis_conn: redis.Redis) -> Finished:
    return finished_highlight(web_settings, redis_conn)


def test_court_page_lists_finished_highlights_only(
    web: WebProc, web_settings: Settings, redis_conn: redis.Redis, clip: Finished
) -> None:
    # an old one (outside GN_WEB_DAYS), one of an unknown camera, one still rendering
    old = finished_highlight(web_settings, redis_conn, at=time.time() - 3 * 86400)
    stranger = finished_highlight(web_settings, redis_conn, camera="ghost")
    from common.highlights import note_highlight

    pending_id = "cam1-20991231T235959000Z"
    note_highlight(redis_conn, web_settings, pending_id, time.time() - 5, state="rendering", camera="cam1")
    status, _, body = web.request("GET", "/c/cam1")
    page = body.decode()
    assert status == 200
    assert f'href="/h/{clip.id}"' in page
    assert old.id not in page and stranger.id not in page
    assert f'data-id="{pending_id}" data-state="rendering"' in page
    # nothing about the box's files
    assert str(web_settings.data_dir) not in page and ".json" not in page
    assert web.request("GET", f"/h/{stranger.id}")[0] == 404
    assert web.request("GET", "/c/ghost")[0] == 404
    venue = web.request("GET", "/")[2].decode()
    assert f"/h/{clip.id}" in venue and 'href="/c/court2"' in venue


def test_player_page_video_and_download(web: WebProc, clip: Finished) -> None:
    status, _, body = web.request("GET", f"/h/{clip.id}")
    page = body.decode()
    assert status == 200
    assert "playsinline" in page and f'poster="/h/{clip.id}/thumb.jpg"' in page
    assert re.search(r'download="cam1_\d{4}-\d\d-\d\d_\d{6}\.mp4"', page)
    status, headers, data = web.request("GET", f"/h/{clip.id}/download")
    assert status == 200 and data == clip.video.read_bytes()
    assert (
        headers["content-disposition"].startswith("attachment;") and "cam1_" in headers["content-disposition"]
    )


def test_range_requests(web: WebProc, clip: Finished) -> None:
    content = clip.video.read_bytes()
    path = f"/h/{clip.id}/video.mp4"
    status, headers, data = web.request("GET", path)
    assert status == 200 and data == content
    assert headers["accept-ranges"] == "bytes" and headers["etag"] and headers["last-modified"]
    status, headers, data = web.request("GET", path, {"Range": "bytes=1000-1999"})
    assert status == 206 and data == content[1000:2000]
    assert headers["content-range"] == f"bytes 1000-1999/{len(content)}"
    status, headers, data = web.request("GET", path, {"Range": "bytes=-500"})
    assert status == 206 and data == content[-500:]
    status, headers, _ = web.request("GET", path, {"Range": f"bytes={len(content) + 10}-"})
    assert status == 416 and headers["content-range"] == f"bytes */{len(content)}"
    # resuming with If-Range: the same ETag gives the range, another gives the whole file
    etag = web.request("HEAD", path)[1]["etag"]
    assert web.request("GET", path, {"Range": "bytes=0-9", "If-Range": etag})[0] == 206
    assert web.request("GET", path, {"Range": "bytes=0-9", "If-Range": '"other"'})[0] == 200
    # thumbnails are cacheable: a revalidation gets 304
    status, headers, _ = web.request("GET", f"/h/{clip.id}/thumb.jpg")
    assert status == 200 and "max-age" in headers["cache-control"]
    assert web.request("GET", f"/h/{clip.id}/thumb.jpg", {"If-None-Match": headers["etag"]})[0] == 304


def test_poster_and_screen_carry_the_court_qr_code(
    make_settings: Callable[..., Settings], tmp_path: Path
) -> None:
    s = make_settings(web_public_url="http://court.example:8080/")
    with WebProc(s, tmp_path / "web.log") as proc:
        for path in ("/c/cam1/poster", "/c/cam1/screen"):
            status, _, body = proc.request("GET", path)
            page = body.decode()
            assert status == 200 and "<svg" in page and "http://court.example:8080/c/cam1" in page
        # without GN_WEB_PUBLIC_URL a phone's own address for the box is used
        s2 = make_settings()
    with WebProc(s2, tmp_path / "web2.log") as proc:
        page = proc.request("GET", "/c/cam1/poster", {"Host": "10.1.2.3:8080"})[2].decode()
        assert "http://10.1.2.3:8080/c/cam1" in page


def test_web_press_takes_the_press_path_and_is_rate_limited(
    web: WebProc, web_settings: Settings, redis_conn: redis.Redis, recording
) -> None:
    recording(web_settings, redis_conn, "cam1")  # presses are refused while a camera is not recording
    # a cross-site form cannot add the page's header
    assert web.request("POST", "/c/cam1/press")[0] == 403
    assert (
        web.request("POST", "/c/cam1/press", {"X-GN-Press": "1", "Origin": "http://evil.example"})[0] == 403
    )
    assert web.request("POST", "/c/ghost/press", {"X-GN-Press": "1"})[0] == 404
    status, _, body = web.request("POST", "/c/cam1/press", {"X-GN-Press": "1"})
    answer = json.loads(body)
    assert status == 200 and answer["state"] == "scheduled", answer
    state = redis_conn.hget(keys.highlight(web_settings.device_id, answer["id"]), "state")
    assert state == b"scheduled"
    # its card shows on the court page at once
    assert f'data-id="{answer["id"]}"' in web.request("GET", "/c/cam1/cards")[2].decode()
    codes = [web.request("POST", "/c/court2/press", {"X-GN-Press": "1"})[0] for _ in range(3)]
    assert codes[-1] == 429 and codes[0] == 200


def test_web_press_off_by_default_and_journalled_when_redis_is_down(
    make_settings: Callable[..., Settings], private_redis, tmp_path: Path
) -> None:
    off = make_settings()
    with WebProc(off, tmp_path / "off.log") as proc:
        assert proc.request("POST", "/c/cam1/press", {"X-GN-Press": "1"})[0] == 404
        assert "Replay!" not in proc.request("GET", "/c/cam1")[2].decode()
    s = make_settings(web_press=True, redis_url=private_redis.url, cooldown_seconds=0)
    with WebProc(s, tmp_path / "on.log") as proc:
        private_redis.stop()
        status, _, body = proc.request("POST", "/c/cam1/press", {"X-GN-Press": "1"})
        assert status == 200 and json.loads(body)["state"] == "journalled"
        assert [p.camera for p in journal.pending(s.journal_dir)] == ["cam1"]
        # pages still answer from the files
        assert proc.request("GET", "/c/cam1")[0] == 200


def login(web: WebProc, password: str = PASSWORD) -> tuple[int, str, str]:
    """Log in like a browser: (status of the POST, session cookie, CSRF token of the new session)."""
    _, headers, body = web.request("GET", "/admin/login")
    cookie = headers["set-cookie"].split(";")[0]
    csrf = csrf_of(body.decode())
    form = urlencode({"csrf": csrf, "password": password}).encode()
    ctype = {"Content-Type": "application/x-www-form-urlencoded", "Cookie": cookie}
    status, headers, _ = web.request("POST", "/admin/login", ctype, form)
    if status != 303:
        return status, cookie, csrf
    cookie = headers["set-cookie"].split(";")[0]
    page = web.request("GET", "/admin", {"Cookie": cookie})[2].decode()
    return status, cookie, csrf_of(page)


def csrf_of(page: str) -> str:
    """The CSRF token of a page's form."""
    found = re.search(r'name="csrf" value="([^"]+)"', page)
    assert found is not None, "no CSRF token in the page"
    return found.group(1)


def test_dashboard_needs_login_and_csrf(
    web: WebProc, clip: Finished, web_settings: Settings, redis_conn: redis.Redis, recording
) -> None:
    recording(web_settings, redis_conn, "cam1")
    status, headers, _ = web.request("GET", "/admin")
    assert status == 303 and headers["location"] == "/admin/login"
    assert web.request("GET", "/admin/panel")[0] == 401
    assert web.request("GET", "/admin/snapshot/cam1.jpg")[0] == 401
    status, cookie, csrf = login(web)
    assert status == 303
    _, headers, _ = web.request("GET", "/admin/login")
    flags = headers["set-cookie"].lower()
    assert "httponly" in flags and "samesite=strict" in flags
    page = web.request("GET", "/admin", {"Cookie": cookie, "Accept-Language": "en"})[2].decode()
    assert "Cameras" in page and "court2" in page and "Failed jobs" in page
    # the venue's language when the browser names none of the dashboard's
    page = web.request("GET", "/admin", {"Cookie": cookie})[2].decode()
    assert "Câmeras" in page and "Tarefas com falha" in page
    form = {"Content-Type": "application/x-www-form-urlencoded", "Cookie": cookie}
    # forged: no token, a wrong token, a token without the cookie
    assert web.request("POST", "/admin/press/cam1", form, b"")[0] == 403
    assert web.request("POST", "/admin/press/cam1", form, b"csrf=forged")[0] == 403
    no_cookie = {"Content-Type": "application/x-www-form-urlencoded"}
    assert web.request("POST", "/admin/press/cam1", no_cookie, f"csrf={csrf}".encode())[0] == 403
    status, headers, _ = web.request("POST", "/admin/press/cam1", form, f"csrf={csrf}".encode())
    assert status == 303 and "note=scheduled" in headers["location"]
    shown = web.request("GET", headers["location"], {"Cookie": cookie, "Accept-Language": "en"})[2].decode()
    assert "cam1: pressed; the highlight is on its way." in shown
    shown = web.request("GET", headers["location"] + "&lang=es", {"Cookie": cookie})[2].decode()
    assert "cam1: pulsado; la jugada está en camino." in shown
    # a crafted link cannot make the dashboard say something of its choosing
    crafted = web.request("GET", "/admin?note=call+0800+now", {"Cookie": cookie})[2].decode()
    assert "0800" not in crafted
    # a cookie signed by someone else is no session
    assert web.request("GET", "/admin", {"Cookie": "gn_admin=eyJjc3JmIjoieCIsImF1dGgiOnRydWV9.x.y"})[0] == 303


def test_login_rate_limit_and_dashboard_off_without_password(
    web: WebProc, make_settings: Callable[..., Settings], tmp_path: Path
) -> None:
    codes = [login(web, "wrong")[0] for _ in range(6)]
    assert codes[:5] == [401] * 5 and codes[5] == 429
    with WebProc(make_settings(), tmp_path / "nodash.log") as proc:
        assert proc.request("GET", "/admin")[0] == 404
        assert proc.request("GET", "/admin/login")[0] == 404


def test_no_secret_in_any_page_or_log(
    web: WebProc, web_settings: Settings, redis_conn: redis.Redis, clip: Finished
) -> None:
    # the recorder reports its source (with the camera's password) in its health hash; an error too
    health = keys.camera_health(web_settings.device_id, "court2")
    src = f"rtsp://admin:{CAM_PASSWORD}@127.0.0.1:1/stream"
    redis_conn.hset(health, mapping={"state": "error", "source": src, "last_error": f"cannot open {src}"})
    _, cookie, _ = login(web)
    pages = [
        web.request("GET", p, {"Cookie": cookie})[2]
        for p in ("/", "/c/cam1", "/c/court2", f"/h/{clip.id}", "/admin", "/admin/panel", "/c/court2/latest")
    ]
    pages.append(web.log.read_bytes())
    for text in pages:
        for secret in (CAM_PASSWORD, SECRET, TOKEN, PASSWORD):
            assert secret.encode() not in text
    assert b"cannot open rtsp://***@127.0.0.1:1/stream" in pages[4]


def test_idle_rss_stays_under_80_mib(web: WebProc, clip: Finished) -> None:
    # every page once (the dashboard imports the most), then idle
    _, cookie, _ = login(web)
    for path in (
        "/",
        "/c/cam1",
        "/c/cam1/poster",
        "/c/cam1/screen",
        f"/h/{clip.id}",
        "/admin",
        "/admin/panel",
    ):
        assert web.request("GET", path, {"Cookie": cookie})[0] == 200, path
    web.request("GET", f"/h/{clip.id}/video.mp4", {"Range": "bytes=0-99999"})
    time.sleep(1)
    assert web.proc is not None
    status = Path(f"/proc/{web.proc.pid}/status").read_text()
    rss = re.search(r"^VmRSS:\s+(\d+) kB", status, re.M)
    assert rss is not None
    rss_kib = int(rss.group(1))
    assert rss_kib < 80 * 1024, f"web app RSS {rss_kib / 1024:.1f} MiB"


def test_web_app_runs_at_the_lowest_priority_that_still_answers(web: WebProc) -> None:
    # Recording, building and rendering win the CPU from it, yet it keeps a share of a busy one (not the
    # idle class, which answers nothing then). Every thread inherits the nice value.
    assert web.proc is not None
    threads = list(Path(f"/proc/{web.proc.pid}/task").iterdir())
    assert len(threads) >= 1
    for task in threads:
        tid = int(task.name)
        assert os.sched_getscheduler(tid) == os.SCHED_OTHER, tid
        assert os.getpriority(os.PRIO_PROCESS, tid) == 19, tid


def test_purge_from_the_dashboard(
    web: WebProc, web_settings: Settings, redis_conn: redis.Redis, tmp_path: Path
) -> None:
    from rq.registry import FailedJobRegistry

    from common.pipeline import enqueue
    from common.redisconn import SERIALIZER
    from tests.helpers import highlight_files, run_gravanois
    from tests.render_helpers import stage_clip

    # a render that fails for good (a sidecar whose raw clip is unreadable), run by a real worker
    side = stage_clip(web_settings, seconds=2)
    data = json.loads(side.read_text())
    raw = web_settings.clips_dir / data["file_name"]
    raw.write_bytes(b"not a video")
    once = dataclasses.replace(web_settings, max_attempts=1)
    job, _ = enqueue(once, redis_conn, "render", side.name, press_id=data["press_id"], at=time.time())
    done = run_gravanois(once, "worker", "--queues", "render", "--burst", "--no-scheduler", timeout=120)
    assert done.returncode == 0, done.stderr
    registry = FailedJobRegistry(
        f"gn.{web_settings.device_id}.render", connection=redis_conn, serializer=SERIALIZER
    )
    assert job.id in registry.get_job_ids()
    # A delivered highlight past GN_KEEP_HIGHLIGHTS_DAYS: a purge applies the retention, as the CLI's does.
    stale = time.time() - (web_settings.keep_highlights_days + 1) * 86400
    web_settings.output_dir.mkdir(parents=True, exist_ok=True)
    highlight_files(web_settings.output_dir, "stale", "watermarked", 0, stale)
    _, cookie, csrf = login(web)
    page = web.request("GET", "/admin", {"Cookie": cookie})[2].decode()
    assert f'data-job="{job.id}"' in page
    form = {"Content-Type": "application/x-www-form-urlencoded", "Cookie": cookie}
    assert web.request("POST", "/admin/failed/purge", form, f"job={job.id}".encode())[0] == 403
    status, headers, _ = web.request(
        "POST", "/admin/failed/purge", form, urlencode({"job": job.id, "csrf": csrf}).encode()
    )
    assert status == 303 and headers["location"] == "/admin?note=purged"
    assert job.id not in registry.get_job_ids()
    assert not raw.exists() and not side.exists()
    assert not list(web_settings.output_dir.glob("stale.*"))
    assert (
        web.request("POST", "/admin/failed/purge", form, urlencode({"job": job.id, "csrf": csrf}).encode())[0]
        == 404
    )
