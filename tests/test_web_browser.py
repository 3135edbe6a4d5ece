"""The web app in a real browser (Debian's chromium driven by Playwright) on a real stack: redis-server,
a recorder on the synthetic camera, a worker, `gravanois web`.

A press from the court page makes a card appear without a reload; the finished clip plays and its
download is byte-identical to what the sidecar describes; the courtside screen plays the new highlight
by itself; the dashboard asks for the password and a failed job requeued from it completes. In each
language (by the browser's Accept-Language, by GN_LANGUAGE, by ?lang=) the court page, the clip page, the
poster and the screen say it, name the court, pass axe-core with no violation, and the clip plays.

axe-core is tests/vendor/axe.min.js, vendored from the npm registry (see AXE below): the tests run with no
network, and the file is checked against the hash it was verified with.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import shutil
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import unquote

import pytest
import redis

from common import sidecar
from common.pipeline import HighlightState
from common.settings import Settings
from harness.finished import finished_highlight
from harness.recorder_helpers import TEST_SOURCE, RecorderProc
from harness.repo import REPO
from tests.helpers import fetch, start_gravanois, wait_for
from tests.render_helpers import stage_clip
from tests.test_trigger_e2e import wait_preroll
from tests.test_web import login
from tests.web_helpers import WebProc

CHROMIUM = "/usr/bin/chromium"
# Debian's chromium, headless, with nothing that would reach out of the machine.
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
PASSWORD = "browser-admin-pw-3"
# axe-core 4.14.1's axe.min.js, from https://registry.npmjs.org/axe-core/-/axe-core-4.14.1.tgz (npm's
# integrity sha512-FHfa+lmNjQZfJz1q8wKqIDwC6DExcHt/pkjNQb09a3NPjCKg2rhu5qb2S4r76ASyFNNtuFooJpZe37OgudVGtQ==
# verified on the tarball); to update: `npm pack axe-core@<version>`, check its integrity against
# `npm view axe-core@<version> dist.integrity`, copy package/axe.min.js here and change both lines.
AXE = REPO / "tests" / "vendor" / "axe.min.js"
AXE_SHA256 = "29348999450cdf2849a8e70b7912fc2da85a849da39c0d0d5394f51d4a9ed95c"

pytestmark = pytest.mark.skipif(
    shutil.which(CHROMIUM) is None, reason="chromium not installed (./run.sh test installs it)"
)


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        b = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield b
        b.close()


def stack_settings(make_settings: Callable[..., Settings], **kw: Any) -> Settings:
    base: dict[str, Any] = {
        "cameras": json.dumps([{"id": "cam1", "source": TEST_SOURCE, "mode": "copy"}]),
        "pre_seconds": 4,
        "post_seconds": 2,
        "seg_time": 1,
        "buffer_seconds": 40,
        "cooldown_seconds": 0,
        "max_attempts": 1,
        "web_press": True,
        "web_admin_password": PASSWORD,
    }
    base.update(kw)
    return make_settings(**base)


def start_worker(s: Settings, tmp: Path, stages: str) -> subprocess.Popen[bytes]:
    out = open(tmp / f"worker-{stages.replace(',', '-')}.log", "wb")  # noqa: SIM115 - lives with the worker
    return start_gravanois(s, "worker", "--queues", stages, stdout=out, stderr=out)


def stop(proc: subprocess.Popen[bytes]) -> None:
    proc.terminate()
    try:
        proc.wait(20)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def wm_sha256(s: Settings, press_id: str) -> str:
    for path in s.output_dir.glob("*.json"):
        data = sidecar.load(path)
        if data.get("press_id") == press_id:
            return str(data["wm_sha256"])
    raise AssertionError(f"no sidecar of {press_id} in {s.output_dir}")


@pytest.mark.slow
def test_press_card_clip_download_and_screen(
    browser: Any, make_settings: Callable[..., Settings], redis_conn: redis.Redis, tmp_path: Path
) -> None:
    s = stack_settings(make_settings)
    rec = RecorderProc(s, "cam1", tmp_path / "logs")
    worker = start_worker(s, tmp_path, "build,render")
    try:
        with WebProc(s, tmp_path / "web.log") as web:
            wait_preroll(redis_conn, s, 5)
            ctx = browser.new_context(accept_downloads=True)
            screen = ctx.new_page()
            screen.goto(f"{web.base}/c/cam1/screen")
            screen.wait_for_selector("#screen[data-ready='1']")
            court = ctx.new_page()
            court.goto(f"{web.base}/c/cam1")
            court.evaluate("window.__noReload = 1")
            assert court.locator(".card").count() == 0
            court.click("#press")
            # the card appears by itself, with its state, and later turns into the clip
            card = court.wait_for_selector(".card[data-id]", timeout=15_000)
            press_id = card.get_attribute("data-id")
            assert card.get_attribute("data-state") in {state.value for state in HighlightState}
            court.wait_for_selector(f".card.done[data-id='{press_id}']", timeout=120_000)
            assert court.evaluate("window.__noReload") == 1, "the court page reloaded"

            # the screen plays it by itself, muted, then goes back to idle
            screen.wait_for_function(
                "id => { const r = document.getElementById('screen');"
                " const v = document.getElementById('replay');"
                " return r.dataset.playing === id && v.currentTime > 0.5 && !v.error; }",
                arg=press_id,
                timeout=30_000,
            )
            screen.wait_for_selector("#screen[data-state='idle']", state="attached", timeout=60_000)

            # the dashboard's picture of the camera: a frame of its newest segment
            _, cookie, _ = login(web, PASSWORD)
            status, headers, jpeg = web.request("GET", "/admin/snapshot/cam1.jpg", {"Cookie": cookie})
            assert status == 200 and headers["content-type"] == "image/jpeg" and jpeg[:2] == b"\xff\xd8"

            # the clip page plays it
            court.click(f".card.done[data-id='{press_id}']")
            court.wait_for_url(f"**/h/{press_id}")
            court.evaluate("() => { const v = document.getElementById('clip'); v.muted = true; v.play(); }")
            court.wait_for_function("() => document.getElementById('clip').currentTime > 1", timeout=30_000)
            assert court.evaluate("document.getElementById('clip').error") is None
            assert court.get_attribute("#clip", "poster") == f"/h/{press_id}/thumb.jpg"

            # the download is the clip the sidecar describes
            with court.expect_download() as info:
                court.click("#download")
            download = info.value
            digest = hashlib.sha256(Path(download.path()).read_bytes()).hexdigest()
            assert digest == wm_sha256(s, press_id)
            assert download.suggested_filename.startswith("cam1_") and download.suggested_filename.endswith(
                ".mp4"
            )
            ctx.close()
    finally:
        stop(worker)
        rec.terminate(10)


@pytest.mark.slow
def test_dashboard_login_then_requeue_a_failed_job(
    browser: Any, make_settings: Callable[..., Settings], redis_conn: redis.Redis, tmp_path: Path
) -> None:
    from common.pipeline import enqueue

    s = stack_settings(make_settings)
    # a render that fails for good: its raw clip is missing while it runs
    side = stage_clip(s, seconds=3)
    data = sidecar.load(side)
    raw = s.clips_dir / data["file_name"]
    kept = tmp_path / "kept.mp4"
    raw.rename(kept)
    worker = start_worker(s, tmp_path, "render")
    try:
        job, _ = enqueue(s, redis_conn, "render", side.name, press_id=data["press_id"], at=time.time())
        wait_for(
            "the render to fail", lambda: fetch(redis_conn, job.id).get_status(refresh=True) == "failed", 60
        )
        kept.rename(raw)  # the operator fixed the cause
        with WebProc(s, tmp_path / "web.log") as web:
            ctx = browser.new_context(locale="en-US")
            page = ctx.new_page()
            page.goto(f"{web.base}/admin")
            assert page.url.endswith("/admin/login")
            page.fill("input[name=password]", "not it")
            page.click("button[type=submit]")
            assert page.locator(".error").inner_text() == "Wrong password."
            page.fill("input[name=password]", PASSWORD)
            page.click("button[type=submit]")
            page.wait_for_url("**/admin")
            row = page.wait_for_selector(f"tr[data-job='{job.id}']")
            assert "missing" in row.inner_text()
            page.click(f"tr[data-job='{job.id}'] button.requeue")
            page.wait_for_url("**/admin?note=requeued")
            wait_for(
                "the requeued render to finish",
                lambda: fetch(redis_conn, job.id).get_status(refresh=True) == "finished",
                90,
            )
            # the dashboard and the court page both show the finished highlight
            page.wait_for_selector(f"tr[data-job='{job.id}']", state="detached", timeout=15_000)
            court = ctx.new_page()
            court.goto(f"{web.base}/c/cam1")
            court.wait_for_selector(f".card.done[data-id='{data['press_id']}']", timeout=15_000)
            ctx.close()
    finally:
        stop(worker)


def test_screen_recovers_from_a_restarted_web_app(
    browser: Any, make_settings: Callable[..., Settings], redis_conn: redis.Redis, tmp_path: Path
) -> None:
    s = stack_settings(make_settings)
    finished_highlight(s, redis_conn, at=time.time() - 120)
    web = WebProc(s, tmp_path / "web1.log")
    with web:
        ctx = browser.new_context()
        screen = ctx.new_page()
        screen.goto(f"{web.base}/c/cam1/screen")
        screen.wait_for_selector("#screen[data-ready='1']")
        screen.evaluate("window.__firstLoad = 1")
    # the box is gone for a while: the screen says so, and keeps trying
    screen.wait_for_selector("#offline", state="visible", timeout=30_000)
    with WebProc(s, tmp_path / "web2.log", port=web.port):
        # back: a new start of the web app makes the page reload itself, then it plays what comes
        screen.wait_for_function("() => window.__firstLoad === undefined", timeout=30_000)
        screen.wait_for_selector("#screen[data-ready='1']", timeout=30_000)
        assert screen.locator("#offline").is_hidden()
        new = finished_highlight(s, redis_conn, seconds=3)
        screen.wait_for_function(
            "id => document.getElementById('screen').dataset.playing === id"
            " && document.getElementById('replay').currentTime > 0.3",
            arg=new.id,
            timeout=30_000,
        )
        ctx.close()


# ---- the pages in each language


COURT = "Quadra Central"
PUBLIC = "http://court.example:8080"
# A browser asking for each language as players' phones do, and one asking for none of ours.
BROWSER_LOCALE = {"pt-BR": "pt-BR", "es": "es-AR", "en": "en-GB"}
NONE_OF_OURS = "de-DE"
# What each page says in each language (written here, not read from the catalogs).
SAYS = {
    "pt-BR": {
        "venue": "Quadras",
        "court": "Replay! Salvar o lance",
        "highlight": "Baixar",
        "poster": "Fez um lance bonito?",
        "screen": "Aperte o botão e veja o replay",
        "whatsapp": "Olha só esse lance!",
    },
    "es": {
        "venue": "Pistas",
        "court": "¡Repetición! Guardar la jugada",
        "highlight": "Descargar",
        "poster": "¿Una jugada de las buenas?",
        "screen": "Pulsa el botón y mira la repetición",
        "whatsapp": "¡Mira esta jugada en",
    },
    "en": {
        "venue": "Courts",
        "court": "Replay! Save the last seconds",
        "highlight": "Download",
        "poster": "Made a great play?",
        "screen": "Press the button for a replay",
        "whatsapp": "Check out this play at",
    },
}


def axe_violations(page: Any) -> list[dict[str, Any]]:
    """axe-core's violations on the page as it is now (every rule axe runs by default)."""
    page.add_script_tag(path=str(AXE))
    found: list[dict[str, Any]] = page.evaluate(
        "async () => (await axe.run()).violations.map(v => ({id: v.id, impact: v.impact,"
        " nodes: v.nodes.map(n => n.target.join(' '))}))"
    )
    return found


def other(lang: str) -> str:
    """Another language of the app than `lang`."""
    return next(x for x in SAYS if x != lang)


def test_the_vendored_axe_core_is_the_verified_file_and_finds_violations(browser: Any) -> None:
    assert hashlib.sha256(AXE.read_bytes()).hexdigest() == AXE_SHA256
    # the check is not vacuous: a page without a language, with a nameless image and button, fails it
    page = browser.new_page()
    page.set_content("<html><body><main><img src='x.png'><button></button></main></body></html>")
    found = {v["id"] for v in axe_violations(page)}
    assert {"html-has-lang", "image-alt", "button-name"} <= found, found
    page.close()


@pytest.mark.parametrize("lang", list(SAYS))
def test_every_page_in_each_language_by_browser_venue_and_query(
    browser: Any,
    make_settings: Callable[..., Settings],
    redis_conn: redis.Redis,
    tmp_path: Path,
    lang: str,
) -> None:
    cameras = json.dumps({"cam1": {"source": "testsrc", "name": COURT}})
    venue_is_lang = make_settings(cameras=cameras, language=lang, web_public_url=PUBLIC, web_press=True)
    venue_is_other = dataclasses.replace(venue_is_lang, language=other(lang))
    clip = finished_highlight(venue_is_lang, redis_conn, seconds=4)
    with (
        WebProc(venue_is_lang, tmp_path / "web-lang.log") as lang_web,
        WebProc(venue_is_other, tmp_path / "web-other.log") as other_web,
    ):
        ways = {
            # the browser asks for it; the venue's language is another one
            "Accept-Language": (other_web, BROWSER_LOCALE[lang], ""),
            # the browser asks for none of ours: the venue's GN_LANGUAGE
            "GN_LANGUAGE": (lang_web, NONE_OF_OURS, ""),
            # ?lang= beats both
            "?lang=": (other_web, BROWSER_LOCALE[other(lang)], f"?lang={lang}"),
        }
        for way, (web, locale, query) in ways.items():
            # bypass_csp: axe-core is injected as an inline script, which the pages' CSP forbids
            ctx = browser.new_context(locale=locale, bypass_csp=True)
            page = ctx.new_page()
            for name, path in (
                ("venue", "/"),
                ("court", "/c/cam1"),
                ("highlight", f"/h/{clip.id}"),
                ("poster", "/c/cam1/poster"),
                ("screen", "/c/cam1/screen"),
            ):
                where = f"{name} page by {way} in {lang}"
                page.goto(f"{web.base}{path}{query}")
                assert page.get_attribute("html", "lang") == lang, where
                assert SAYS[lang][name] in page.inner_text("body"), where
                assert COURT in page.inner_text("main"), where
                if name == "screen":
                    page.wait_for_selector("#screen[data-ready='1']")
                    # the type docs/web.md states for 5 m, and all of it on the screen in this language
                    sizes = page.evaluate(
                        "() => ['#idle h1', '#idle .howto'].map(s =>"
                        " parseFloat(getComputedStyle(document.querySelector(s)).fontSize) / innerHeight)"
                    )
                    assert sizes[0] >= 0.099 and sizes[1] >= 0.069, (where, sizes)
                    box = page.evaluate(
                        "() => { const r = document.getElementById('idle').getBoundingClientRect();"
                        " return [r.top, r.bottom, r.left, r.right, innerHeight, innerWidth]; }"
                    )
                    assert box[0] >= 0 and box[1] <= box[4] and box[2] >= 0 and box[3] <= box[5], (where, box)
                assert axe_violations(page) == [], where
                if name == "highlight":
                    href = page.get_attribute("#whatsapp", "href")
                    assert href is not None and href.startswith("https://wa.me/?text="), where
                    shared = unquote(href.removeprefix("https://wa.me/?text="))
                    assert shared.startswith(SAYS[lang]["whatsapp"]), where
                    assert shared.endswith(f"{PUBLIC}/h/{clip.id}"), where
                    page.evaluate(
                        "() => { const v = document.getElementById('clip'); v.muted = true; v.play(); }"
                    )
                    page.wait_for_function(
                        "() => document.getElementById('clip').currentTime > 0.5", timeout=20_000
                    )
                    assert page.evaluate("document.getElementById('clip').error") is None, where
            # the court page's links keep a ?lang= choice: its clip, and back to the court
            page.goto(f"{web.base}/c/cam1{query}")
            page.click(f".card.done[data-id='{clip.id}']")
            clip_page = f"{web.base}/h/{clip.id}{query}"
            page.wait_for_url(lambda url, want=clip_page: url == want)
            assert page.get_attribute("html", "lang") == lang
            page.click("a.crumb")
            court_page = f"{web.base}/c/cam1{query}"
            page.wait_for_url(lambda url, want=court_page: url == want)
            assert page.get_attribute("html", "lang") == lang
            ctx.close()


@pytest.mark.parametrize(
    ("lang", "says"), [("pt-BR", "Tarefas com falha"), ("es", "Tareas fallidas"), ("en", "Failed jobs")]
)
def test_the_dashboard_in_each_language_passes_axe(
    browser: Any,
    make_settings: Callable[..., Settings],
    redis_conn: redis.Redis,
    tmp_path: Path,
    lang: str,
    says: str,
) -> None:
    cameras = json.dumps({"cam1": {"source": "testsrc", "name": COURT}})
    s = make_settings(cameras=cameras, web_admin_password=PASSWORD)
    finished_highlight(s, redis_conn)
    with WebProc(s, tmp_path / "web.log") as web:
        ctx = browser.new_context(locale=BROWSER_LOCALE[lang], bypass_csp=True)
        page = ctx.new_page()
        page.goto(f"{web.base}/admin")
        assert page.get_attribute("html", "lang") == lang
        assert axe_violations(page) == [], "login"
        page.fill("input[name=password]", PASSWORD)
        page.click("button[type=submit]")
        page.wait_for_url("**/admin")
        assert page.get_attribute("html", "lang") == lang and says in page.inner_text("main")
        assert COURT in page.inner_text("#panel")
        assert axe_violations(page) == [], "dashboard"
        ctx.close()


def test_phone_pages_in_pt_br_fit_the_screen(
    browser: Any, make_settings: Callable[..., Settings], redis_conn: redis.Redis, tmp_path: Path
) -> None:
    """The court page and the clip page on a phone (390 × 844 CSS px): nothing wider than the screen.

    With WEB_SCREENSHOTS=<folder> they are also saved there (docs/web.md shows the ones in docs/).
    """
    cameras = json.dumps({"cam1": {"source": "testsrc", "name": COURT}})
    s = make_settings(cameras=cameras, web_press=True, web_public_url=PUBLIC)
    for minutes in (14, 9, 2):
        clip = finished_highlight(s, redis_conn, at=time.time() - 60 * minutes, seconds=4)
    shots = os.environ.get("WEB_SCREENSHOTS")
    with WebProc(s, tmp_path / "web.log") as web:
        ctx = browser.new_context(
            locale="pt-BR", viewport={"width": 390, "height": 844}, device_scale_factor=2, is_mobile=True
        )
        page = ctx.new_page()
        for name, path in (("court", "/c/cam1"), ("highlight", f"/h/{clip.id}")):
            page.goto(f"{web.base}{path}")
            page.wait_for_load_state("networkidle")
            if name == "highlight":  # the clip's length is known: the player is ready
                page.wait_for_function("() => document.getElementById('clip').readyState >= 1")
            assert page.evaluate("document.documentElement.scrollWidth <= window.innerWidth"), name
            if shots:
                page.screenshot(path=str(Path(shots) / f"web-{name}-pt-BR.png"))
        ctx.close()
