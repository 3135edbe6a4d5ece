"""Web: the `gravanois web` app (player pages, courtside screen, operator dashboard; docs/web.md)."""

from __future__ import annotations

from dataclasses import dataclass

from common.settings.fields import RESTART, Concern, setting, url


@dataclass(frozen=True)
class WebSettings(Concern):
    """Where the web app listens, the URL its QR codes show, its dashboard password."""

    title = "Web app (`gravanois web`; see docs/web.md)"

    web_bind: str = setting("0.0.0.0", "Address the web app listens on (0.0.0.0: phones on the Wi-Fi).")
    web_port: int = setting(8080, "TCP port of the web app.", at_least=1, at_most=65535)
    web_public_url: str = setting(
        "",
        "Base URL QR codes point at, like http://192.168.1.20:8080 (empty: guessed).",
        check=url("http://", "https://", like="http://192.168.1.20:8080", optional=True),
    )
    web_admin_password: str = setting(
        "", "Password of the /admin dashboard (empty: the dashboard is off).", secret=True
    )
    web_press: bool = setting(
        False, "Show a replay button on court pages that presses like the real one.", remote=RESTART
    )
    web_days: float = setting(
        1.0, "Days of highlights listed on a court page.", above=0, unit="days", remote=RESTART
    )
