"""The web app assembled: every route, the middleware and the error answers (Starlette).

The handlers live by concern: players.py (the players' pages and the replay button), media.py (clips
with byte ranges, thumbnails, static files), auth.py (the dashboard's login, CSRF, the signed cookie),
admin.py (the dashboard), guard.py (the defences every route shares); site.py holds what they share.
Handlers that touch Redis, files or ffmpeg are plain functions, which Starlette runs in its thread pool,
so a slow Redis never blocks the event loop that streams clips.
"""

from __future__ import annotations

import redis
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import Route

from common.log import event, get_logger, redact
from common.settings import Settings
from common.timeutil import iso
from ops.web import guard
from ops.web.admin import Admin
from ops.web.auth import Auth
from ops.web.media import Media
from ops.web.players import Players
from ops.web.site import Site

log = get_logger(__name__)


def health(request: Request) -> Response:
    """`/healthz`: the process answers (for supervisors and tests)."""
    return PlainTextResponse("ok " + iso())


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


def create_app(settings: Settings, conn: redis.Redis | None = None) -> Starlette:
    """The ASGI app for these settings."""
    site = Site(settings, conn)
    players, media, auth = Players(site), Media(site), Auth(site)
    admin = Admin(site, auth)
    get = ["GET"]
    routes = [
        Route("/", players.venue, methods=get),
        Route("/healthz", health, methods=get),
        Route("/static/{name}", media.static, methods=get),
        Route("/c/{camera}", players.court, methods=get),
        Route("/c/{camera}/cards", players.cards, methods=get),
        Route("/c/{camera}/poster", players.poster, methods=get),
        Route("/c/{camera}/screen", players.screen, methods=get),
        Route("/c/{camera}/latest", players.latest, methods=get),
        Route("/c/{camera}/press", players.web_press, methods=["POST"]),
        Route("/h/{hid}", players.player, methods=get),
        Route("/h/{hid}/video.mp4", media.video, methods=get),
        Route("/h/{hid}/download", media.download, methods=get),
        Route("/h/{hid}/thumb.jpg", media.thumb, methods=get),
        Route("/h/{hid}/captions.vtt", players.captions, methods=get),
        Route("/admin", admin.admin, methods=get),
        Route("/admin/panel", admin.panel, methods=get),
        Route("/admin/login", auth.login_page, methods=get),
        Route("/admin/login", auth.login, methods=["POST"]),
        Route("/admin/logout", auth.logout, methods=["POST"]),
        Route("/admin/snapshot/{camera}.jpg", admin.snapshot_jpeg, methods=get),
        Route("/admin/press/{camera}", admin.admin_press, methods=["POST"]),
        Route("/admin/failed/{action:str}", admin.failed_action, methods=["POST"]),
    ]
    app = Starlette(
        routes=routes,
        middleware=[Middleware(guard.SecurityHeaders), Middleware(guard.BodyLimit)],
        exception_handlers={HTTPException: _http_error, Exception: _server_error},
    )
    app.state.site = site
    return app
