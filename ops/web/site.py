"""What every handler of the web app shares: settings, Redis, the box's records, the page templates in
each language, the court and highlight named in a path, and the one press path.

Pages are rendered here (Jinja2 with its i18n extension, one Environment per language holding that
language's catalog and formats: i18n.py); the little JavaScript in `static/` only polls small fragments
or JSON to update a page without a reload, and reads its few words from the page.
"""

from __future__ import annotations

import importlib.resources
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import redis
from jinja2 import Environment, FunctionLoader, select_autoescape
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import HTMLResponse

from common.log import event, get_logger
from common.redisconn import connect
from common.settings import Settings
from common.settings.web import LANGUAGES
from common.timeutil import now
from ops.web import i18n
from ops.web.records import Highlight, Records
from trigger.press import Outcome, make_presses, submit

log = get_logger(__name__)

PACKAGE = i18n.PACKAGE


def _template(name: str) -> str | None:
    resource = importlib.resources.files(PACKAGE) / "templates" / name
    return resource.read_text(encoding="utf-8") if resource.is_file() else None


def _duration(seconds: float | None) -> str:
    if seconds is None:
        return ""
    s = round(seconds)
    return f"{s // 60}:{s % 60:02d}"


@dataclass(frozen=True)
class Language:
    """The language a request is answered in, and the query string that keeps it in the page's links."""

    tag: str  # as <html lang> says it: pt-BR, es, en
    keep: str  # "?lang=es" when the request chose it by ?lang=, else "" (the browser's choice holds)

    def link(self, path: str) -> str:
        """`path` with the language kept, when the request chose it."""
        return path + self.keep


def _environment(settings: Settings, catalog: i18n.Catalog, formats: i18n.Formats) -> Environment:
    """The templates in one language: its catalog, its date and number formats in the venue's time zone."""
    env = Environment(
        loader=FunctionLoader(_template),
        autoescape=select_autoescape(default=True),
        extensions=["jinja2.ext.i18n"],
    )
    env.install_gettext_translations(catalog, newstyle=True)  # type: ignore[attr-defined]
    env.globals.update(device=settings.device_id, court_names={c.id: c.label for c in settings.cameras})
    env.filters.update(time=formats.time, moment=formats.moment, number=formats.number, duration=_duration)
    return env


class Site:
    """Settings, Redis, the records and the templates, shared by the handlers of every part of the app."""

    def __init__(self, settings: Settings, conn: redis.Redis | None = None) -> None:
        self.settings = settings
        self.conn = conn or connect(settings)
        self.records = Records(settings, self.conn)
        self.catalogs = {lang: i18n.catalog(lang) for lang in LANGUAGES}
        self.formats = {lang: i18n.Formats(lang, settings.timezone) for lang in LANGUAGES}
        self.envs = {
            lang: _environment(settings, self.catalogs[lang], self.formats[lang]) for lang in LANGUAGES
        }

    def language(self, request: Request) -> Language:
        """The language this request is answered in (i18n.choose)."""
        tag, by_query = i18n.choose(
            request.query_params.get(i18n.QUERY),
            request.headers.get("accept-language", ""),
            self.settings.language,
        )
        return Language(tag, f"?{i18n.QUERY}={tag}" if by_query else "")

    def gettext(self, request: Request) -> Callable[[str], str]:
        """The gettext of this request's language, for the texts a handler answers with."""
        return self.catalogs[self.language(request).tag].gettext

    def page(self, request: Request, name: str, status: int = 200, **context: Any) -> HTMLResponse:
        """Render a template into an HTML response, in the request's language."""
        lang = self.language(request)
        html = (
            self.envs[lang.tag]
            .get_template(name)
            .render(cameras=self.cameras, press=self.settings.web_press, lang=lang, **context)
        )
        headers = {"cache-control": "no-store", "content-language": lang.tag, "vary": "Accept-Language"}
        return HTMLResponse(html, status_code=status, headers=headers)

    @property
    def cameras(self) -> list[str]:
        """Configured camera ids (the courts)."""
        return [c.id for c in self.settings.cameras]

    def court_name(self, cam: str) -> str:
        """The court as people read it: its GN_CAMERAS name, else its id."""
        return self.settings.camera(cam).label

    def camera(self, request: Request) -> str:
        """The configured camera named in the path, else 404."""
        cam: str = request.path_params.get("camera", "")
        if cam not in self.cameras:
            _ = self.gettext(request)
            raise HTTPException(404, _("There is no such court here."))
        return cam

    def highlight(self, request: Request) -> Highlight:
        """The finished highlight named by id in the path, found in the box's records, else 404."""
        item = self.records.get(request.path_params.get("hid", ""))
        if item is None:
            _ = self.gettext(request)
            raise HTTPException(404, _("This replay is not here (or was already deleted)."))
        return item

    def press_button(self, cam: str, source: str) -> Outcome:
        """Press `cam` from a page: the same path as the physical button (cooldown, hours, journal)."""
        [press] = make_presses(self.settings, [cam], now(), source)
        result = submit(self.settings, self.conn, press)
        event(log, "web_press", camera=cam, state=result.state, source=source)
        return result
