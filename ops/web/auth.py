"""The dashboard's login: the signed session cookie, its CSRF token, the login and logout pages.

The session is one signed cookie (itsdangerous; HttpOnly, SameSite=Strict) holding a random CSRF token
and whether the password was given. Every state-changing request must send that token back in its form:
a page on another site can neither read the cookie nor the token. The signing key is random per process:
a restart of the web app only asks the operator to log in again.
"""

from __future__ import annotations

import hmac
import secrets
from typing import Any
from urllib.parse import parse_qs

from itsdangerous import BadSignature, URLSafeTimedSerializer
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response

from common.log import event, get_logger
from ops.web import guard
from ops.web.site import Site

log = get_logger(__name__)

COOKIE = "gn_admin"
SESSION_SECONDS = 12 * 3600
# Wrong passwords tolerated per client address before the login answers 429 for a while.
LOGIN_LIMIT, LOGIN_WINDOW = 5, 300.0


class Sessions:
    """Signs and reads the dashboard's session cookie."""

    def __init__(self, key: bytes | None = None) -> None:
        self._signer = URLSafeTimedSerializer(key or secrets.token_bytes(32), salt="gn-admin")

    def new(self, authed: bool = False) -> dict[str, Any]:
        """A fresh session with a new CSRF token (a login rotates it, so a planted token dies)."""
        return {"csrf": secrets.token_urlsafe(24), "auth": authed}

    def dump(self, session: dict[str, Any]) -> str:
        """The cookie value."""
        return self._signer.dumps(session)

    def load(self, value: str | None) -> dict[str, Any] | None:
        """The session in a cookie, or None when missing, forged or expired."""
        if not value:
            return None
        try:
            data = self._signer.loads(value, max_age=SESSION_SECONDS)
        except BadSignature:
            return None
        if not isinstance(data, dict) or not isinstance(data.get("csrf"), str):
            return None
        return data


def same(a: str, b: str) -> bool:
    """Constant-time equality of two texts (password, CSRF token)."""
    return hmac.compare_digest(a.encode(), b.encode())


class Auth:
    """The login and logout pages, and the session and CSRF checks the dashboard's handlers ask for."""

    def __init__(self, site: Site) -> None:
        self.site = site
        self.sessions = Sessions()
        self.login_limit = guard.RateLimit(LOGIN_LIMIT, LOGIN_WINDOW)

    def session(self, request: Request) -> dict[str, Any] | None:
        """The dashboard session of this request (None: none, forged or expired)."""
        return self.sessions.load(request.cookies.get(COOKIE))

    def set_session(self, response: Response, session: dict[str, Any]) -> Response:
        """Attach the signed session cookie (HttpOnly, SameSite=Strict, path /admin)."""
        response.set_cookie(
            COOKIE,
            self.sessions.dump(session),
            max_age=SESSION_SECONDS,
            path="/admin",
            httponly=True,
            samesite="strict",
            secure=self.site.settings.web_public_url.startswith("https://"),
        )
        return response

    def dashboard_on(self) -> None:
        """404 unless the dashboard is on (GN_WEB_ADMIN_PASSWORD set)."""
        if not self.site.settings.web_admin_password:
            raise HTTPException(404, "the dashboard is off (GN_WEB_ADMIN_PASSWORD is empty)")

    def authed(self, request: Request) -> dict[str, Any] | None:
        """The request's session if it is logged in, else None (404 when the dashboard is off)."""
        self.dashboard_on()
        session = self.session(request)
        return session if session and session.get("auth") else None

    async def form(self, request: Request, session: dict[str, Any] | None) -> dict[str, str]:
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
        if session is None or not token or not same(token, session["csrf"]) or not guard.same_origin(request):
            raise HTTPException(403, "missing or wrong CSRF token: reload the page")
        return form

    def login_page(self, request: Request) -> Response:
        """The login form (with a fresh pre-login session holding the CSRF token)."""
        self.dashboard_on()
        session = self.session(request)
        if session and session.get("auth"):
            return RedirectResponse("/admin", status_code=303)
        session = session or self.sessions.new()
        return self.set_session(
            self.site.page(request, "login.html", csrf=session["csrf"], error=""), session
        )

    async def login(self, request: Request) -> Response:
        """Check the password (constant time, rate-limited per client); rotate the session on success."""
        self.dashboard_on()
        session = self.session(request)
        form = await self.form(request, session)
        client = guard.client(request)
        if self.login_limit.full(client):
            raise HTTPException(429, "too many attempts: wait a few minutes")
        if not same(form.get("password", ""), self.site.settings.web_admin_password):
            self.login_limit.hit(client)
            event(log, "web_login_failed", level=30, client=client)
            assert session is not None
            _ = self.site.gettext(request)
            error = _("Wrong password.")
            page = self.site.page(request, "login.html", status=401, csrf=session["csrf"], error=error)
            return self.set_session(page, session)
        event(log, "web_login", client=client)
        return self.set_session(RedirectResponse("/admin", status_code=303), self.sessions.new(authed=True))

    async def logout(self, request: Request) -> Response:
        """End the session."""
        self.dashboard_on()
        await self.form(request, self.session(request))
        response = RedirectResponse("/admin/login", status_code=303)
        response.delete_cookie(COOKIE, path="/admin")
        return response
