"""The web app's languages and court names: every text of the code and templates is in every catalog, a
request gets the language it asks for, and the court's name is what people read.

Over HTTP on a real web process (the browser's view, with axe-core, is in test_web_browser.py).
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from pathlib import Path
from urllib.parse import unquote

import pytest
import redis
from babel.messages.catalog import Catalog
from babel.messages.extract import extract_from_dir
from babel.messages.frontend import parse_mapping_cfg
from babel.messages.pofile import read_po

from common.settings import Settings
from common.settings.web import LANGUAGES
from harness.finished import finished_highlight
from harness.repo import REPO
from ops.web import i18n
from tests.web_helpers import WebProc

WEB = REPO / "ops" / "web"
CATALOGS = {lang: WEB / "locale" / i18n.locale_id(lang) / "LC_MESSAGES" / "messages.po" for lang in LANGUAGES}
COURT = "Quadra Central"
CAMERAS = json.dumps({"cam1": {"source": "testsrc", "name": COURT}, "court2": "testsrc"})


def extracted(root: Path = REPO) -> set[str]:
    """Every text pybabel extracts with ops/web/babel.cfg (the singular of a plural text)."""
    with (WEB / "babel.cfg").open(encoding="utf-8") as f:
        method_map, options_map = parse_mapping_cfg(f)
    found = set()
    for _file, _line, message, _comments, _context in extract_from_dir(root, method_map, options_map):
        found.add(message[0] if isinstance(message, tuple) else message)
    return found


def problems(catalog: Catalog, wanted: set[str]) -> list[str]:
    """What is wrong with a catalog for these texts: missing, empty, fuzzy, unused or with bad formats."""
    have = {(m.id[0] if isinstance(m.id, tuple) else m.id): m for m in catalog if m.id}
    out = [f"missing: {text!r}" for text in sorted(wanted - set(have))]
    out += [f"not used any more: {text!r}" for text in sorted(set(have) - wanted)]
    for text, message in have.items():
        strings = message.string if isinstance(message.string, tuple) else (message.string,)
        if not all(strings) or len(strings) != (catalog.num_plurals if message.pluralizable else 1):
            out.append(f"untranslated: {text!r}")
        if message.fuzzy:
            out.append(f"fuzzy: {text!r}")
    out += [f"{m.id!r}: {e}" for m, errors in catalog.check() for e in errors]
    return out


@pytest.mark.parametrize("lang", [lang for lang in LANGUAGES if lang != i18n.SOURCE_LANGUAGE])
def test_every_text_of_the_web_app_is_translated_in_every_catalog(lang: str) -> None:
    wanted = extracted()
    assert len(wanted) > 80  # the pages, the dashboard and the handlers' answers
    with CATALOGS[lang].open("rb") as f:
        catalog = read_po(f, locale=i18n.locale_id(lang))
    assert problems(catalog, wanted) == []
    # what the app loads is that catalog
    assert i18n.catalog(lang).gettext("Download") != "Download"


def test_handlers_hand_gettext_texts_pybabel_can_extract() -> None:
    # `site.gettext(request)("text")` would translate nothing: pybabel only sees `_("text")`, `N_("text")`
    for module in sorted(WEB.glob("*.py")):
        source = module.read_text(encoding="utf-8")
        assert not re.search(r"gettext\([^()]*\)\(\s*[\"']", source), module.name


def test_the_catalog_check_finds_a_new_text_and_a_broken_placeholder(tmp_path: Path) -> None:
    copy = tmp_path / "ops" / "web"
    (copy / "templates").mkdir(parents=True)
    (copy / "templates" / "new.html").write_text('<p>{{ _("A text nobody translated yet") }}</p>')
    (copy / "babel.cfg").write_text((WEB / "babel.cfg").read_text())
    new = extracted(tmp_path)
    assert new == {"A text nobody translated yet"}
    catalog = Catalog(locale="es")
    catalog.add("Press %(court)s", "Pulsar %(pista)s", flags=("python-format",))
    found = problems(catalog, {"Press %(court)s", "A text nobody translated yet"})
    assert found[0] == "missing: 'A text nobody translated yet'"
    assert any("placeholder" in p for p in found), found


@pytest.mark.parametrize(
    ("query", "accept", "venue", "expected"),
    [
        (None, "", "pt-BR", ("pt-BR", False)),
        (None, "es-AR,es;q=0.9,en;q=0.8", "pt-BR", ("es", False)),
        (None, "de-DE,de;q=0.9", "es", ("es", False)),
        (None, "de;q=0.9,en-GB;q=0.95", "pt-BR", ("en", False)),
        (None, "pt-PT", "en", ("pt-BR", False)),
        (None, "es;q=0,en", "pt-BR", ("en", False)),
        ("en", "es-AR", "pt-BR", ("en", True)),
        ("pt_br", "es", "en", ("pt-BR", True)),
        ("xx", "es", "en", ("es", False)),
    ],
)
def test_the_language_is_the_query_s_then_the_browser_s_then_the_venue_s(
    query: str | None, accept: str, venue: str, expected: tuple[str, bool]
) -> None:
    assert i18n.choose(query, accept, venue) == expected


def test_dates_and_numbers_in_each_language_s_format_and_the_venue_s_zone() -> None:
    at = 1_780_000_000.0  # 2026-05-28 20:26:40 UTC
    rows = {lang: i18n.Formats(lang, "America/Sao_Paulo") for lang in LANGUAGES}
    assert rows["pt-BR"].time(at) == "17:26"
    assert rows["es"].time(at) == "17:26"
    assert rows["en"].time(at).replace("\u202f", " ") == "5:26 PM"
    assert rows["pt-BR"].moment(at) == "28/05/2026 17:26"
    assert rows["en"].moment(at).replace("\u202f", " ") == "5/28/26, 5:26 PM"
    assert rows["pt-BR"].number(1234.5) == "1.234,5" and rows["en"].number(1234.5) == "1,234.5"


def html_lang(page: str) -> str:
    found = re.search(r'<html lang="([^"]+)">', page)
    assert found is not None
    return found[1]


def test_pages_answer_in_the_asked_language_with_the_court_s_name(
    make_settings: Callable[..., Settings], redis_conn: redis.Redis, tmp_path: Path, recording
) -> None:
    s = make_settings(cameras=CAMERAS, web_press=True, cooldown_seconds=0)
    clip = finished_highlight(s, redis_conn)
    with WebProc(s, tmp_path / "web.log") as web:
        venue = web.request("GET", "/")[2].decode()
        assert html_lang(venue) == "pt-BR" and "Quadras" in venue and COURT in venue
        assert 'href="/c/cam1"' in venue and ">court2<" in venue  # a court without a name: its id
        es = web.request("GET", "/c/cam1", {"Accept-Language": "es-AR,es;q=0.9"})
        assert html_lang(es[2].decode()) == "es" and es[1]["content-language"] == "es"
        assert "Pistas" not in es[2].decode() and COURT in es[2].decode()
        # ?lang= beats the browser and is kept by the page's links (the list's refresh, a clip, the press)
        en = web.request("GET", "/c/cam1?lang=en", {"Accept-Language": "es"})[2].decode()
        assert html_lang(en) == "en" and "Replay! Save the last seconds" in en
        for link in (f'href="/h/{clip.id}?lang=en"', 'data-src="/c/cam1/cards?lang=en"', 'href="/?lang=en"'):
            assert link in en
        # the clip page: the name, the caption track in the page's language, the download named after it
        page = web.request("GET", f"/h/{clip.id}", {"Accept-Language": "es"})[2].decode()
        assert f"<h1>{COURT} · " in page and "Descargar" in page
        assert f'src="/h/{clip.id}/captions.vtt?lang=es"' in page and 'srclang="es"' in page
        assert re.search(r'download="Quadra-Central_\d{4}-\d\d-\d\d_\d{6}\.mp4"', page)
        headers = web.request("GET", f"/h/{clip.id}/download")[1]
        assert "Quadra-Central_" in headers["content-disposition"]
        status, headers, vtt = web.request("GET", f"/h/{clip.id}/captions.vtt?lang=pt-BR")
        assert status == 200 and headers["content-type"].startswith("text/vtt")
        cue = rf"00:00:00\.000 --> 00:00:0\d\.\d\d\d\n{COURT} · \d\d/\d\d/\d{{4}} \d\d:\d\d"
        assert re.fullmatch(rf"WEBVTT\n\n{cue}\n", vtt.decode())
        # the press button's answers and errors in the page's language
        recording(s, redis_conn, "cam1")
        answer = json.loads(web.request("POST", "/c/cam1/press?lang=es", {"X-GN-Press": "1"})[2])
        assert answer["state"] == "scheduled" and answer["message"].startswith("¡Guardado!")
        refused = web.request("POST", "/c/cam1/press", {"Accept-Language": "pt-BR"})
        assert refused[0] == 403 and "Aperte o botão de replay" in refused[2].decode()


def test_whatsapp_link_carries_the_clip_page_s_address_in_the_page_s_language(
    make_settings: Callable[..., Settings], redis_conn: redis.Redis, tmp_path: Path
) -> None:
    s = make_settings(cameras=CAMERAS, web_public_url="http://court.example:8080")
    clip = finished_highlight(s, redis_conn)
    texts = {"pt-BR": "Olha só esse lance!", "es": "¡Mira esta jugada en", "en": "Check out this play at"}
    with WebProc(s, tmp_path / "web.log") as web:
        for lang, text in texts.items():
            page = web.request("GET", f"/h/{clip.id}?lang={lang}")[2].decode()
            found = re.search(r'id="whatsapp" class="[^"]*" href="https://wa\.me/\?text=([^"]+)"', page)
            assert found is not None, page
            shared = unquote(found[1])
            assert shared.startswith(text) and COURT in shared
            assert shared.endswith(f" http://court.example:8080/h/{clip.id}")


def test_poster_prints_a_second_language_and_its_qr_code_has_none(
    make_settings: Callable[..., Settings], tmp_path: Path
) -> None:
    s = make_settings(cameras=CAMERAS, poster_languages="es,pt-BR", web_public_url="http://court.example")
    with WebProc(s, tmp_path / "web.log") as web:
        page = web.request("GET", "/c/cam1/poster")[2].decode()
        assert html_lang(page) == "pt-BR" and f"<h1>{COURT}</h1>" in page
        assert "Fez um lance bonito?" in page and '<div class="also" lang="es">' in page
        assert "¿Una jugada de las buenas?" in page
        # in Spanish, the second language is the next one listed
        page = web.request("GET", "/c/cam1/poster?lang=es")[2].decode()
        assert '<div class="also" lang="pt-BR">' in page
        # the QR code and the address printed under it: the court page, each phone picks its language
        assert '<p class="url">http://court.example/c/cam1</p>' in page
        screen = web.request("GET", "/c/cam1/screen?lang=en")[2].decode()
        assert "Press the button for a replay" in screen and f"<h1>{COURT}</h1>" in screen


def test_status_names_the_court(
    make_settings: Callable[..., Settings], redis_conn: redis.Redis, recording
) -> None:
    from ops.status import render_text, snapshot

    s = make_settings(cameras=CAMERAS)
    recording(s, redis_conn, "cam1")
    text = render_text(snapshot(s, redis_conn, highlights=0))
    assert re.search(rf"^cam1 \({COURT}\) +yes", text, re.M), text
    assert re.search(r"^court2 +", text, re.M), text
