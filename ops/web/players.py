"""The players' pages: the venue, a court's highlights (live), its printable QR poster, the courtside
screen, one highlight's player page, and the court page's replay button.

Handlers that touch Redis or run a command are plain functions, which Starlette runs in its thread pool.
"""

from __future__ import annotations

import ipaddress
import secrets
import subprocess
import threading
from typing import Any

import segno
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from ops.web import guard
from ops.web.media import download_name
from ops.web.site import Site

# Newest highlights per court on the venue page.
VENUE_NEWEST = 3
# A client may press the web button this often (the camera's cooldown applies on top).
PRESS_LIMIT, PRESS_WINDOW = 3, 60.0


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
        return self.site.page("venue.html", courts=courts)

    def court(self, request: Request) -> Response:
        """`/c/<camera>`: the court's highlights of the last GN_WEB_DAYS days, live."""
        cam = self.site.camera(request)
        items = self.site.records.court(cam)
        return self.site.page("court.html", camera=cam, items=items, days=self.site.settings.web_days)

    def cards(self, request: Request) -> Response:
        """The court page's list alone, for its live refresh."""
        cam = self.site.camera(request)
        return self.site.page("cards.html", camera=cam, items=self.site.records.court(cam))

    def poster(self, request: Request) -> Response:
        """`/c/<camera>/poster`: a printable A4 page with the court's QR code."""
        cam = self.site.camera(request)
        url = f"{self.public_base(request)}/c/{cam}"
        return self.site.page("poster.html", camera=cam, url=url, qr=self.qr_svg(url))

    def screen(self, request: Request) -> Response:
        """`/c/<camera>/screen`: the courtside kiosk page."""
        cam = self.site.camera(request)
        url = f"{self.public_base(request)}/c/{cam}"
        return self.site.page("screen.html", camera=cam, url=url, qr=self.qr_svg(url), boot=self.boot)

    def latest(self, request: Request) -> Response:
        """JSON for the screen: the court's newest finished highlight (id, clip URL, duration)."""
        cam = self.site.camera(request)
        item = self.site.records.newest_finished(cam)
        body: dict[str, Any] = {"boot": self.boot, "id": None}
        if item is not None:
            body.update(id=item.id, video=f"/h/{item.id}/video.mp4", duration=item.duration)
        return JSONResponse(body, headers={"cache-control": "no-store"})

    def player(self, request: Request) -> Response:
        """`/h/<id>`: the clip in a player, with download and share buttons."""
        item = self.site.highlight(request)
        filename = download_name(self.site.settings, item)
        return self.site.page("highlight.html", item=item, filename=filename)

    def web_press(self, request: Request) -> Response:
        """The court page's replay button: the same press path as the physical button, rate-limited."""
        cam = self.site.camera(request)
        if not self.site.settings.web_press:
            raise HTTPException(404, "the replay button is off")
        # The page's script sends this header; a form on another site cannot (no CORS here).
        if request.headers.get("x-gn-press") != "1" or not guard.same_origin(request):
            raise HTTPException(403, "press from the court page")
        if not self.press_limit.hit(guard.client(request)):
            raise HTTPException(429, "too many presses from this phone: wait a minute")
        result = self.site.press_button(cam, "web")
        return JSONResponse({"state": result.state, "id": result.press.press_id, "detail": result.detail})

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
