"""What every handler of the web app shares: settings, Redis, the box's records, the page templates,
the court and highlight named in a path, and the one press path.

Pages are rendered here (Jinja2, templates shipped in the package); the little JavaScript in `static/`
only polls small fragments or JSON to update a page without a reload.
"""

from __future__ import annotations

import importlib.resources
from typing import Any

import redis
from jinja2 import Environment, FunctionLoader, select_autoescape
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import HTMLResponse

from common.log import event, get_logger
from common.redisconn import connect
from common.settings import Settings
from common.timeutil import now
from ops.web.records import Highlight, Records, local_time
from trigger.press import Outcome, make_presses, submit

log = get_logger(__name__)

PACKAGE = "ops.web"


def _template(name: str) -> str | None:
    resource = importlib.resources.files(PACKAGE) / "templates" / name
    return resource.read_text(encoding="utf-8") if resource.is_file() else None


def _duration(seconds: float | None) -> str:
    if seconds is None:
        return ""
    s = round(seconds)
    return f"{s // 60}:{s % 60:02d}"


class Site:
    """Settings, Redis, the records and the templates, shared by the handlers of every part of the app."""

    def __init__(self, settings: Settings, conn: redis.Redis | None = None) -> None:
        self.settings = settings
        self.conn = conn or connect(settings)
        self.records = Records(settings, self.conn)
        self.env = Environment(loader=FunctionLoader(_template), autoescape=select_autoescape(default=True))
        self.env.globals.update(device=settings.device_id)
        self.env.filters.update(
            local=lambda at, fmt="%H:%M": local_time(settings, at, fmt), duration=_duration
        )

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

    def press_button(self, cam: str, source: str) -> Outcome:
        """Press `cam` from a page: the same path as the physical button (cooldown, hours, journal)."""
        [press] = make_presses(self.settings, [cam], now(), source)
        result = submit(self.settings, self.conn, press)
        event(log, "web_press", camera=cam, state=result.state, source=source)
        return result
