"""The players' pages: the venue, a court's highlights (live), its printable QR poster, the courtside
screen, one highlight's player page with its captions, and the court page's replay button.

Every page and answer is in the request's language (site.Site.language); links keep a `?lang=` choice.

Handlers that touch Redis or run a command are plain functions, which Starlette runs in its thread pool.
"""

from __future__ import annotations

import html
import ipaddress
import secrets
import subprocess
import threading
from typing import Any
from urllib.parse import quote

import segno
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from ops.web import guard
from ops.web.i18n import N_
from ops.web.media import download_name
from ops.web.site import Site
from trigger.press import Result

# Newest highlights per court on the venue page.
VENUE_NEWEST = 3
# A client may press the web button this often (the camera's cooldown applies on top).
PRESS_LIMIT, PRESS_WINDOW = 3, 60.0
# What the court page's replay button tells the player, for each answer of the press path.
PRESS_ANSWERS = {
    Result.SCHEDULED: N_("Saved! Your replay shows up below in about a minute."),
    Result.JOURNALLED: N_("Saved! The box is catching up: your replay shows up below in a few minutes."),
    Result.COOLDOWN: N_("A replay was just saved: wait a few seconds and press again."),
    Result.CLOSED: N_("The replay button only works during opening hours."),
    Result.DUPLICATE: N_("This replay is already on its way."),
    Result.REFUSED: N_("Not saved: this court's camera is not recording. Please tell the staff."),
    Result.NOT_SAVED: N_("Not saved: the box has a problem. Please tell the staff."),
}


class Players:
    """The handlers of the pages players and the courtside screen open."""

    def __init__(self, site: Site) -> None:
        self.site = site
        self.press_limit = guard.RateLimit(PRESS_LIMIT, PRESS_WINDOW)
        # Changes at every start: an open screen page reloads itself when the box comes back.
        self.boot = secrets.token_hex(6)
        self._qr: dict[str, str] = {}
        self._qr_lock = threading.Lock()
        self._lan: str | None = None

    def venue(self, request: Request) -> Response:
        """`/`: every court with its newest finished highlights."""
        courts = []
        for cam in self.site.cameras:
            done = [h for h in self.site.records.court(cam) if h.finished][:VENUE_NEWEST]
            courts.append({"id": cam, "highlights": done})
        return self.site.page(request, "venue.html", courts=courts)

    def court(self, request: Request) -> Response:
        """`/c/<camera>`: the court's highlights of the last GN_WEB_DAYS days, live."""
        cam = self.site.camera(request)
        items = self.site.records.court(cam)
        days = self.site.settings.web_days
        # ngettext's count: a fraction of a day takes the plural in every language offered.
        days_n = int(days) if days.is_integer() else 2
        return self.site.page(request, "court.html", camera=cam, items=items, days=days, days_n=days_n)

    def cards(self, request: Request) -> Response:
        """The court page's list alone, for its live refresh."""
        cam = self.site.camera(request)
        return self.site.page(request, "cards.html", camera=cam, items=self.site.records.court(cam))

    def poster(self, request: Request) -> Response:
        """`/c/<camera>/poster`: a printable A4 page with the court's QR code, in the page's language and
        the first other one of GN_POSTER_LANGUAGES.

        The QR code is the court page without a language: each phone that scans it gets its own.
        """
        cam = self.site.camera(request)
        url = f"{self.public_base(request)}/c/{cam}"
        lang = self.site.language(request).tag
        second = next((other for other in self.site.settings.poster_languages if other != lang), None)
        also = None
        if second is not None:
            also = {"lang": second, "html": self.site.envs[second].get_template("howto.html").render()}
        return self.site.page(request, "poster.html", camera=cam, url=url, qr=self.qr_svg(url), also=also)

    def screen(self, request: Request) -> Response:
        """`/c/<camera>/screen`: the courtside kiosk page."""
        cam = self.site.camera(request)
        url = f"{self.public_base(request)}/c/{cam}"
        qr = self.qr_svg(url)
        return self.site.page(request, "screen.html", camera=cam, url=url, qr=qr, boot=self.boot)

    def latest(self, request: Request) -> Response:
        """JSON for the screen: the court's newest finished highlight (id, clip URL, duration)."""
        cam = self.site.camera(request)
        item = self.site.records.newest_finished(cam)
        body: dict[str, Any] = {"boot": self.boot, "id": None}
        if item is not None:
            body.update(id=item.id, video=f"/h/{item.id}/video.mp4", duration=item.duration)
        return JSONResponse(body, headers={"cache-control": "no-store"})

    def player(self, request: Request) -> Response:
        """`/h/<id>`: the clip in a player, with download, share and WhatsApp buttons.

        The WhatsApp link carries the clip page's own address (without a language: whoever opens it
        gets theirs) and a short text in this page's language.
        """
        item = self.site.highlight(request)
        filename = download_name(self.site.settings, item)
        _ = self.site.gettext(request)
        page_url = f"{self.public_base(request)}/h/{item.id}"
        text = _("Check out this play at %(court)s!") % {"court": self.site.court_name(item.camera)}
        whatsapp = "https://wa.me/?text=" + quote(f"{text} {page_url}", safe="")
        return self.site.page(request, "highlight.html", item=item, filename=filename, whatsapp=whatsapp)

    def captions(self, request: Request) -> Response:
        """`/h/<id>/captions.vtt`: the clip's caption (WebVTT): the court and the press time, throughout."""
        item = self.site.highlight(request)
        lang = self.site.language(request).tag
        end = max(item.duration or 0.0, 1.0)
        cue = f"{self.site.court_name(item.camera)} · {self.site.formats[lang].moment(item.at)}"
        # A cue's text is markup: &, < and > are escaped (which also keeps a "-->" in a name harmless).
        body = f"WEBVTT\n\n00:00:00.000 --> {_vtt_time(end)}\n{html.escape(cue, quote=False)}\n"
        return Response(body, media_type="text/vtt; charset=utf-8", headers={"content-language": lang})

    def web_press(self, request: Request) -> Response:
        """The court page's replay button: the same press path as the physical button, rate-limited."""
        cam = self.site.camera(request)
        _ = self.site.gettext(request)
        if not self.site.settings.web_press:
            raise HTTPException(404, _("The replay button is off at this venue."))
        # The page's script sends this header; a form on another site cannot (no CORS here).
        if request.headers.get("x-gn-press") != "1" or not guard.same_origin(request):
            raise HTTPException(403, _("Press the replay button on the court's page."))
        if not self.press_limit.hit(guard.client(request)):
            raise HTTPException(429, _("Too many presses from this phone: wait a minute."))
        result = self.site.press_button(cam, "web")
        return JSONResponse(
            {
                "state": result.state,
                "id": result.press.press_id,
                "detail": result.detail,
                "message": _(PRESS_ANSWERS[result.state]),
            }
        )

    def public_base(self, request: Request) -> str:
        """Base URL for QR codes: GN_WEB_PUBLIC_URL, else how this request reached us, unless that was
        loopback (the courtside screen), in which case the box's own network address."""
        settings = self.site.settings
        if settings.web_public_url:
            return settings.web_public_url.rstrip("/")
        host = request.url.hostname or ""
        try:
            loopback = host == "localhost" or ipaddress.ip_address(host).is_loopback
        except ValueError:
            loopback = False
        if not loopback and host:
            return f"{request.url.scheme}://{request.url.netloc}"
        port = request.url.port or settings.web_port
        return f"http://{self.lan_address() or host or '127.0.0.1'}:{port}"

    def lan_address(self) -> str | None:
        """The box's first network address (Debian's `hostname -I`), looked up once."""
        if self._lan is None:
            try:
                out = subprocess.run(["hostname", "-I"], capture_output=True, text=True, timeout=3).stdout
                self._lan = next((a for a in out.split() if ":" not in a), "")
            except (OSError, subprocess.TimeoutExpired):
                self._lan = ""
        return self._lan or None

    def qr_svg(self, url: str) -> str:
        """An inline SVG QR code of `url` (cached: the court URLs never change while we run)."""
        with self._qr_lock:
            svg = self._qr.get(url)
            if svg is None:
                svg = segno.make(url, error="m").svg_inline(
                    scale=8, border=2, dark="#000", light="#fff", omitsize=True
                )
                self._qr[url] = svg
            return svg


def _vtt_time(seconds: float) -> str:
    """A WebVTT timestamp (00:01:02.500)."""
    ms = round(seconds * 1000)
    return f"{ms // 3600000:02d}:{ms // 60000 % 60:02d}:{ms // 1000 % 60:02d}.{ms % 1000:03d}"
