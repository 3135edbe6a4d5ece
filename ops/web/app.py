"""The web app's routes: players' court and clip pages, the courtside screen, the operator dashboard.

Pages are rendered here (Jinja2, templates shipped in the package); the little JavaScript in `static/`
only polls small fragments or JSON to update a page without a reload. Handlers that touch Redis, files
or ffmpeg are plain functions, which Starlette runs in its thread pool, so a slow Redis never blocks the
event loop that streams clips.
"""

from __future__ import annotations

import hashlib
import importlib.resources
import ipaddress
import secrets
import subprocess
import threading
import time
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

import redis
import segno
from jinja2 import Environment, FunctionLoader, select_autoescape
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import (
    FileResponse,
    HTMLResponse,
    JSONResponse,
    PlainTextResponse,
    RedirectResponse,
    Response,
)
from starlette.routing import Route

from common.log import event, get_logger, redact
from common.redisconn import connect
from common.settings import Settings
from common.timeutil import iso, now
from ops.web import guard
from ops.web.records import Highlight, Records, local_time
from ops.web.snapshots import Snapshots
from trigger.press import Result

log = get_logger(__name__)

PACKAGE = "ops.web"
STATIC_TYPES = {".css": "text/css; charset=utf-8", ".js": "text/javascript; charset=utf-8"}
# Newest highlights per court on the venue page.
VENUE_NEWEST = 3
# A client may press the web button this often (the camera's cooldown applies on top).
PRESS_LIMIT, PRESS_WINDOW = 3, 60.0
# Wrong passwords tolerated per client address before the login answers 429 for a while.
LOGIN_LIMIT, LOGIN_WINDOW = 5, 300.0
# More byte ranges than this in one request is refused (416): a player asks for one; many overlapping
# ones only serve to make the box send a clip many times over.
MAX_RANGES = 8
# What the dashboard says after an action (the redirect names one of these keys).
NOTES = {
    Result.SCHEDULED: "pressed; the highlight is on its way.",
    Result.COOLDOWN: "not pressed: within the camera's cooldown.",
    Result.CLOSED: "not pressed: outside the opening hours (GN_OPEN_HOURS).",
    Result.JOURNALLED: "pressed while Redis is down: saved in the journal, the listener enqueues it.",
    Result.DUPLICATE: "this press is already queued.",
    Result.REFUSED: "not pressed: the camera is not recording (see Cameras).",
    Result.NOT_SAVED: "not pressed: Redis is down and the journal cannot be written (disk full?).",
    "requeued": "Job requeued with a fresh attempt budget.",
    "purged": "Job and its files purged.",
    "gone": "That job is no longer in the failed registry.",
}
# Highlights listed on the dashboard.
ADMIN_HIGHLIGHTS = 15
SECURITY_HEADERS = {
    "x-content-type-options": "nosniff",
    "referrer-policy": "same-origin",
    "x-frame-options": "DENY",
    # Everything the pages use comes from the box itself: no inline script, no CDN.
    "content-security-policy": (
        "default-src 'self'; img-src 'self' data:; media-src 'self'; style-src 'self'; "
        "script-src 'self'; frame-ancestors 'none'; form-action 'self'; base-uri 'none'"
    ),
}


def _template(name: str) -> str | None:
    resource = importlib.resources.files(PACKAGE) / "templates" / name
    return resource.read_text(encoding="utf-8") if resource.is_file() else None


def _static_files() -> dict[str, tuple[bytes, str, str]]:
    """name → (bytes, content type, ETag) of every file shipped in `static/`, read once."""
    out = {}
    for entry in (importlib.resources.files(PACKAGE) / "static").iterdir():
        suffix = Path(entry.name).suffix
        if entry.is_file() and suffix in STATIC_TYPES:
            data = entry.read_bytes()
            out[entry.name] = (data, STATIC_TYPES[suffix], '"' + hashlib.sha256(data).hexdigest()[:20] + '"')
    return out


def _duration(seconds: float | None) -> str:
    if seconds is None:
        return ""
    s = round(seconds)
    return f"{s // 60}:{s % 60:02d}"


class WebApp:
    """State shared by the handlers: settings, Redis, the records, caches, limits, the session signer."""

    def __init__(self, settings: Settings, conn: redis.Redis | None = None) -> None:
        self.settings = settings
        self.conn = conn or connect(settings)
        self.records = Records(settings, self.conn)
        self.snapshots = Snapshots(settings, self.conn)
        self.sessions = guard.Sessions()
        self.press_limit = guard.RateLimit(PRESS_LIMIT, PRESS_WINDOW)
        self.login_limit = guard.RateLimit(LOGIN_LIMIT, LOGIN_WINDOW)
        self.static_files = _static_files()
        # Changes at every start: an open screen page reloads itself when the box comes back.
        self.boot = secrets.token_hex(6)
        self._qr: dict[str, str] = {}
        self._qr_lock = threading.Lock()
        self._lan: str | None = None
        self.env = Environment(loader=FunctionLoader(_template), autoescape=select_autoescape(default=True))
        self.env.globals.update(device=settings.device_id)
        self.env.filters.update(
            local=lambda at, fmt="%H:%M": local_time(settings, at, fmt), duration=_duration
        )

    # ---- helpers

    def page(self, name: str, status: int = 200, **context: Any) -> HTMLResponse:
        """Render a template into an HTML response."""
        html = self.env.get_template(name).render(
            cameras=self.cameras, press=self.settings.web_press, **context
        )
        return HTMLResponse(html, status_code=status, headers={"cache-control": "no-store"})

    @property
    def cameras(self) -> list[str]:
        """Configured camera ids (the courts)."""
        return [c.id for c in self.settings.cameras]

    def camera(self, request: Request) -> str:
        """The configured camera named in the path, else 404."""
        cam: str = request.path_params.get("camera", "")
        if cam not in self.cameras:
            raise HTTPException(404, "no such court")
        return cam

    def highlight(self, request: Request) -> Highlight:
        """The finished highlight named by id in the path, found in the box's records, else 404."""
        item = self.records.get(request.path_params.get("hid", ""))
        if item is None:
            raise HTTPException(404, "no such highlight")
        return item

    def public_base(self, request: Request) -> str:
        """Base URL for QR codes: GN_WEB_PUBLIC_URL, else how this request reached us, unless that was
        loopback (the courtside screen), in which case the box's own network address."""
        if self.settings.web_public_url:
            return self.settings.web_public_url.rstrip("/")
        host = request.url.hostname or ""
        try:
            loopback = host == "localhost" or ipaddress.ip_address(host).is_loopback
        except ValueError:
            loopback = False
        if not loopback and host:
            return f"{request.url.scheme}://{request.url.netloc}"
        port = request.url.port or self.settings.web_port
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

    def download_name(self, item: Highlight) -> str:
        """`<court>_<local date>_<local time>.mp4`: what a player's phone saves."""
        return f"{item.camera}_{local_time(self.settings, item.at, '%Y-%m-%d_%H%M%S')}.mp4"

    # ---- players

    def venue(self, request: Request) -> Response:
        """`/`: every court with its newest finished highlights."""
        courts = []
        for cam in self.cameras:
            done = [h for h in self.records.court(cam) if h.finished][:VENUE_NEWEST]
            courts.append({"id": cam, "highlights": done})
        return self.page("venue.html", courts=courts)

    def court(self, request: Request) -> Response:
        """`/c/<camera>`: the court's highlights of the last GN_WEB_DAYS days, live."""
        cam = self.camera(request)
        return self.page("court.html", camera=cam, items=self.records.court(cam), days=self.settings.web_days)

    def cards(self, request: Request) -> Response:
        """The court page's list alone, for its live refresh."""
        cam = self.camera(request)
        return self.page("cards.html", camera=cam, items=self.records.court(cam))

    def poster(self, request: Request) -> Response:
        """`/c/<camera>/poster`: a printable A4 page with the court's QR code."""
        cam = self.camera(request)
        url = f"{self.public_base(request)}/c/{cam}"
        return self.page("poster.html", camera=cam, url=url, qr=self.qr_svg(url))

    def screen(self, request: Request) -> Response:
        """`/c/<camera>/screen`: the courtside kiosk page."""
        cam = self.camera(request)
        url = f"{self.public_base(request)}/c/{cam}"
        return self.page("screen.html", camera=cam, url=url, qr=self.qr_svg(url), boot=self.boot)

    def latest(self, request: Request) -> Response:
        """JSON for the screen: the court's newest finished highlight (id, clip URL, duration)."""
        cam = self.camera(request)
        item = self.records.newest_finished(cam)
        body: dict[str, Any] = {"boot": self.boot, "id": None}
        if item is not None:
            body.update(id=item.id, video=f"/h/{item.id}/video.mp4", duration=item.duration)
        return JSONResponse(body, headers={"cache-control": "no-store"})

    def player(self, request: Request) -> Response:
        """`/h/<id>`: the clip in a player, with download and share buttons."""
        item = self.highlight(request)
        return self.page("highlight.html", item=item, filename=self.download_name(item))

    def video(self, request: Request) -> Response:
        """The watermarked clip, with ranges (206/416), ETag and Last-Modified."""
        return self._file(request, attachment=False)

    def download(self, request: Request) -> Response:
        """The same clip as an attachment named after the court and the time."""
        return self._file(request, attachment=True)

    def _file(self, request: Request, attachment: bool) -> Response:
        item = self.highlight(request)
        assert item.video is not None  # records.get returns finished highlights only
        try:
            st = item.video.stat()
        except OSError:
            raise HTTPException(404, "no such highlight") from None
        # The sidecar's sha256 names the content exactly; the size guards against a half-replaced file.
        etag = (
            f'"{item.sha256[:32]}-{st.st_size:x}"' if item.sha256 else f'"{st.st_mtime_ns:x}-{st.st_size:x}"'
        )
        headers = {"etag": etag, "cache-control": "public, max-age=3600"}
        wanted = request.headers.get("range")
        if wanted is None and _not_modified(request, etag):
            return Response(status_code=304, headers=headers)
        if wanted is not None and wanted.count(",") >= MAX_RANGES:
            return PlainTextResponse(
                "416: too many ranges\n", status_code=416, headers={"content-range": f"bytes */{st.st_size}"}
            )
        return FileResponse(
            item.video,
            media_type="video/mp4",
            headers=headers,
            filename=self.download_name(item) if attachment else None,
            content_disposition_type="attachment",
            stat_result=st,
        )

    def thumb(self, request: Request) -> Response:
        """The highlight's thumbnail (cacheable)."""
        item = self.highlight(request)
        if item.thumb is None:
            raise HTTPException(404, "no thumbnail")
        try:
            st = item.thumb.stat()
        except OSError:
            raise HTTPException(404, "no thumbnail") from None
        etag = f'"{st.st_mtime_ns:x}-{st.st_size:x}"'
        headers = {"etag": etag, "cache-control": "public, max-age=86400"}
        if _not_modified(request, etag):
            return Response(status_code=304, headers=headers)
        return FileResponse(item.thumb, media_type="image/jpeg", headers=headers, stat_result=st)

    async def static(self, request: Request) -> Response:
        """A file shipped in the package's `static/` folder, by exact name only."""
        found = self.static_files.get(request.path_params.get("name", ""))
        if found is None:
            raise HTTPException(404, "not found")
        data, ctype, etag = found
        headers = {"etag": etag, "cache-control": "public, max-age=600"}
        if _not_modified(request, etag):
            return Response(status_code=304, headers=headers)
        return Response(data, media_type=ctype, headers=headers)

    def web_press(self, request: Request) -> Response:
        """The court page's replay button: the same press path as the physical button, rate-limited."""
        cam = self.camera(request)
        if not self.settings.web_press:
            raise HTTPException(404, "the replay button is off")
        # The page's script sends this header; a form on another site cannot (no CORS here).
        if request.headers.get("x-gn-press") != "1" or not _same_origin(request):
            raise HTTPException(403, "press from the court page")
        if not self.press_limit.hit(_client(request)):
            raise HTTPException(429, "too many presses from this phone: wait a minute")
        result = self._press(cam, "web")
        return JSONResponse({"state": result.state, "id": result.press.press_id, "detail": result.detail})

    def _press(self, cam: str, source: str) -> Any:
        from trigger.press import make_presses, submit  # the one press path (cooldown, hours, journal)

        [press] = make_presses(self.settings, [cam], now(), source)
        result = submit(self.settings, self.conn, press)
        event(log, "web_press", camera=cam, state=result.state, source=source)
        return result

    # ---- dashboard

    def session(self, request: Request) -> dict[str, Any] | None:
        """The dashboard session of this request (None: none, forged or expired)."""
        return self.sessions.load(request.cookies.get(guard.COOKIE))

    def set_session(self, response: Response, session: dict[str, Any]) -> Response:
        """Attach the signed session cookie (HttpOnly, SameSite=Strict, path /admin)."""
        response.set_cookie(
            guard.COOKIE,
            self.sessions.dump(session),
            max_age=guard.SESSION_SECONDS,
            path="/admin",
            httponly=True,
            samesite="strict",
            secure=self.settings.web_public_url.startswith("https://"),
        )
        return response

    def _admin_on(self) -> None:
        if not self.settings.web_admin_password:
            raise HTTPException(404, "the dashboard is off (GN_WEB_ADMIN_PASSWORD is empty)")

    async def _form(self, request: Request, session: dict[str, Any] | None) -> dict[str, str]:
        """The posted form, after the CSRF check (403 without the session's token)."""
        body = b""
        async for chunk in request.stream():
            body += chunk
            if len(body) > guard.MAX_BODY_BYTES:
                raise HTTPException(413, "request body too large")
        try:
            fields = parse_qs(body.decode("utf-8"), max_num_fields=20, strict_parsing=False)
        except (UnicodeDecodeError, ValueError):
            raise HTTPException(400, "bad form") from None
        form = {k: v[0] for k, v in fields.items() if v}
        token = form.get("csrf", "")
        if (
            session is None
            or not token
            or not guard.same(token, session["csrf"])
            or not _same_origin(request)
        ):
            raise HTTPException(403, "missing or wrong CSRF token: reload the page")
        return form

    def login_page(self, request: Request) -> Response:
        """The login form (with a fresh pre-login session holding the CSRF token)."""
        self._admin_on()
        session = self.session(request)
        if session and session.get("auth"):
            return RedirectResponse("/admin", status_code=303)
        session = session or self.sessions.new()
        return self.set_session(self.page("login.html", csrf=session["csrf"], error=""), session)

    async def login(self, request: Request) -> Response:
        """Check the password (constant time, rate-limited per client); rotate the session on success."""
        self._admin_on()
        session = self.session(request)
        form = await self._form(request, session)
        client = _client(request)
        if self.login_limit.full(client):
            raise HTTPException(429, "too many attempts: wait a few minutes")
        if not guard.same(form.get("password", ""), self.settings.web_admin_password):
            self.login_limit.hit(client)
            event(log, "web_login_failed", level=30, client=client)
            assert session is not None
            return self.set_session(
                self.page("login.html", status=401, csrf=session["csrf"], error="Wrong password."), session
            )
        event(log, "web_login", client=client)
        return self.set_session(RedirectResponse("/admin", status_code=303), self.sessions.new(authed=True))

    async def logout(self, request: Request) -> Response:
        """End the session."""
        self._admin_on()
        await self._form(request, self.session(request))
        response = RedirectResponse("/admin/login", status_code=303)
        response.delete_cookie(guard.COOKIE, path="/admin")
        return response

    def _authed(self, request: Request) -> dict[str, Any] | None:
        self._admin_on()
        session = self.session(request)
        return session if session and session.get("auth") else None

    def admin(self, request: Request) -> Response:
        """`/admin`: the dashboard (login first)."""
        session = self._authed(request)
        if session is None:
            return RedirectResponse("/admin/login", status_code=303)
        # Only the box's own phrases: a link cannot make the dashboard show a text of its choosing.
        note = NOTES.get(request.query_params.get("note", ""), "")
        cam = request.query_params.get("camera", "")
        if note and cam in self.cameras:
            note = f"{cam}: {note}"
        return self.page("admin.html", **self._dashboard(session), note=note)

    def panel(self, request: Request) -> Response:
        """The dashboard's body alone, for its live refresh."""
        session = self._authed(request)
        if session is None:
            raise HTTPException(401, "log in again")
        return self.page("panel.html", **self._dashboard(session))

    def _dashboard(self, session: dict[str, Any]) -> dict[str, Any]:
        from ops.status import snapshot  # what `gravanois status` shows, from the one place

        snap = snapshot(self.settings, self.conn, highlights=ADMIN_HIGHLIGHTS)
        return {"snap": snap, "csrf": session["csrf"], "stamp": int(time.time())}

    def snapshot_jpeg(self, request: Request) -> Response:
        """A current frame of a camera (cached: at most one decode per second per camera)."""
        if self._authed(request) is None:
            raise HTTPException(401, "log in first")
        cam = self.camera(request)
        jpeg = self.snapshots.get(cam)
        if jpeg is None:
            raise HTTPException(404, "no picture from this camera yet")
        return Response(jpeg, media_type="image/jpeg", headers={"cache-control": "no-store"})

    async def admin_press(self, request: Request) -> Response:
        """The dashboard's press button of one camera."""
        session = self._authed(request)
        cam = self.camera(request)
        await self._form(request, session)
        if session is None:
            raise HTTPException(401, "log in first")
        from starlette.concurrency import run_in_threadpool

        result = await run_in_threadpool(self._press, cam, "web-admin")
        return RedirectResponse(f"/admin?note={result.state}&camera={cam}", status_code=303)

    async def failed_action(self, request: Request) -> Response:
        """Requeue or purge one failed job (the same logic as `gravanois failed`)."""
        session = self._authed(request)
        form = await self._form(request, session)
        if session is None:
            raise HTTPException(401, "log in first")
        from starlette.concurrency import run_in_threadpool

        action = request.path_params["action"]
        if action not in ("requeue", "purge"):
            raise HTTPException(404, "no such action")
        note = await run_in_threadpool(self._failed, action, form.get("job", ""))
        return RedirectResponse(f"/admin?note={note}", status_code=303)

    def _failed(self, action: str, job_id: str) -> str:
        from ops import jobs  # the same operations as `gravanois failed`

        try:
            [row] = jobs.select(jobs.failed_jobs(self.settings, self.conn), (job_id,), all_=False)
        except jobs.JobError:
            raise HTTPException(404, "no such failed job") from None
        if action == "requeue":
            try:
                jobs.requeue(self.settings, row)
            except jobs.JobError:  # it left the registry meanwhile (another operator, a CLI)
                return "gone"
            event(log, "web_requeue", job_id=job_id)
            return "requeued"
        jobs.purge(self.settings, [row])
        event(log, "web_purge", job_id=job_id)
        return "purged"

    def health(self, request: Request) -> Response:
        """`/healthz`: the process answers (for supervisors and tests)."""
        return PlainTextResponse("ok " + iso())


def _client(request: Request) -> str:
    return request.client.host if request.client else "?"


def _not_modified(request: Request, etag: str) -> bool:
    wanted = request.headers.get("if-none-match", "")
    return bool(wanted) and any(t.strip().removeprefix("W/") == etag for t in wanted.split(","))


def _same_origin(request: Request) -> bool:
    """A browser's Origin header, when sent, must be this host (a second line behind the CSRF token)."""
    origin = request.headers.get("origin")
    if origin is None:
        return True
    host = request.headers.get("host", "")
    return origin in (f"http://{host}", f"https://{host}")


async def _http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    headers = dict(exc.headers or {})
    return PlainTextResponse(
        f"{exc.status_code}: {exc.detail}\n", status_code=exc.status_code, headers=headers
    )


async def _server_error(request: Request, exc: Exception) -> Response:
    # Never a traceback to a client; the log line is redacted like every other.
    event(log, "web_error", level=40, path=request.url.path, error=redact(f"{type(exc).__name__}: {exc}"))
    return PlainTextResponse("500: internal error\n", status_code=500)


class SecurityHeaders:
    """ASGI middleware adding SECURITY_HEADERS to every response."""

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        """Add the headers at response start."""
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        extra = [(k.encode(), v.encode()) for k, v in SECURITY_HEADERS.items()]

        async def send_with(message: Any) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = list(message.get("headers", [])) + extra
            await send(message)

        await self.app(scope, receive, send_with)


def create_app(settings: Settings, conn: redis.Redis | None = None) -> Starlette:
    """The ASGI app for these settings."""
    web = WebApp(settings, conn)
    get = ["GET"]
    routes = [
        Route("/", web.venue, methods=get),
        Route("/healthz", web.health, methods=get),
        Route("/static/{name}", web.static, methods=get),
        Route("/c/{camera}", web.court, methods=get),
        Route("/c/{camera}/cards", web.cards, methods=get),
        Route("/c/{camera}/poster", web.poster, methods=get),
        Route("/c/{camera}/screen", web.screen, methods=get),
        Route("/c/{camera}/latest", web.latest, methods=get),
        Route("/c/{camera}/press", web.web_press, methods=["POST"]),
        Route("/h/{hid}", web.player, methods=get),
        Route("/h/{hid}/video.mp4", web.video, methods=get),
        Route("/h/{hid}/download", web.download, methods=get),
        Route("/h/{hid}/thumb.jpg", web.thumb, methods=get),
        Route("/admin", web.admin, methods=get),
        Route("/admin/panel", web.panel, methods=get),
        Route("/admin/login", web.login_page, methods=get),
        Route("/admin/login", web.login, methods=["POST"]),
        Route("/admin/logout", web.logout, methods=["POST"]),
        Route("/admin/snapshot/{camera}.jpg", web.snapshot_jpeg, methods=get),
        Route("/admin/press/{camera}", web.admin_press, methods=["POST"]),
        Route("/admin/failed/{action:str}", web.failed_action, methods=["POST"]),
    ]
    app = Starlette(
        routes=routes,
        middleware=[Middleware(SecurityHeaders), Middleware(guard.BodyLimit)],
        exception_handlers={HTTPException: _http_error, Exception: _server_error},
    )
    app.state.web = web
    return app
