"""Web: the `gravanois web` app (player pages, courtside screen, operator dashboard; docs/web.md)."""

from __future__ import annotations

from dataclasses import dataclass

from common.settings.fields import RESTART, Concern, Parser, setting, url

# The languages of the players' pages and the dashboard (BCP 47 tags, as `<html lang>` says them); the
# first is the default.
LANGUAGES = ("pt-BR", "es", "en")
# Languages a poster prints at most (its page's own, then one of GN_POSTER_LANGUAGES).
POSTER_LANGUAGES_MAX = 2


def _read_languages(raw: str) -> tuple[str, ...]:
    return tuple(part.strip() for part in raw.split(",") if part.strip())


def _check_poster_languages(value: tuple[str, ...]) -> None:
    unknown = [lang for lang in value if lang not in LANGUAGES]
    if unknown:
        raise ValueError(f"{', '.join(unknown)} is not one of {', '.join(LANGUAGES)}")
    if len(value) > POSTER_LANGUAGES_MAX:
        raise ValueError(f"name at most {POSTER_LANGUAGES_MAX} languages, like pt-BR,es")


@dataclass(frozen=True)
class WebSettings(Concern):
    """Where the web app listens, the URL its QR codes show, its dashboard password, its language."""

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
    language: str = setting(
        LANGUAGES[0],
        "Language of the pages when the browser asks for none of pt-BR, es, en (?lang=xx overrides both).",
        choices=LANGUAGES,
        remote=RESTART,
    )
    poster_languages: tuple[str, ...] = setting(
        (),
        "Languages the poster prints, like pt-BR,es: its page's own, then the first other one listed.",
        parse=Parser(_read_languages, "languages like pt-BR,es", ",".join),
        check=_check_poster_languages,
        remote=RESTART,
    )
