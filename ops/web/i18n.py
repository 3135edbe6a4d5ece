"""The web app's languages: which one a request gets, its gettext catalog, and its date and number formats.

A request's language is `?lang=` when it names one of LANGUAGES, else the first of the browser's
`Accept-Language` that matches one (by its tag, then by its language alone: es-AR is es, pt-PT is pt-BR),
else GN_LANGUAGE. English is the text in the code and templates; the other languages' catalogs are
`locale/<ll_CC>/LC_MESSAGES/messages.po` (gettext, extracted and updated with Babel's pybabel, see
docs/web.md). The catalogs are read and compiled in memory when the app starts: there is no `.mo` file
that could lag behind its `.po`.
"""

from __future__ import annotations

import gettext
import importlib.resources
import io
from datetime import UTC, datetime
from zoneinfo import ZoneInfo

from babel import Locale
from babel.dates import format_datetime, format_time
from babel.messages.mofile import write_mo
from babel.messages.pofile import read_po
from babel.numbers import format_decimal
from babel.support import Translations

from common.settings.web import LANGUAGES

PACKAGE = "ops.web"
DOMAIN = "messages"
# The language the code's own texts are written in: it needs no catalog.
SOURCE_LANGUAGE = "en"
QUERY = "lang"
# A language's translations (gettext's; Babel's Translations for a catalog, the null ones for English).
Catalog = gettext.NullTranslations


def N_(text: str) -> str:
    """Mark a text for the catalogs where it is declared; it is translated where it is shown."""
    return text


def match(tag: str) -> str | None:
    """The language of LANGUAGES a BCP 47 tag asks for (pt-br, pt_BR, pt, pt-PT: pt-BR), or None."""
    wanted = tag.strip().replace("_", "-").lower()
    if not wanted:
        return None
    for lang in LANGUAGES:
        if lang.lower() == wanted:
            return lang
    primary = wanted.split("-")[0]
    return next((lang for lang in LANGUAGES if lang.lower().split("-")[0] == primary), None)


def from_accept_language(header: str) -> str | None:
    """The first language of LANGUAGES an Accept-Language header asks for, by its q values, or None."""
    ranked: list[tuple[float, int, str]] = []
    for position, part in enumerate(header.split(",")):
        tag, _, params = part.partition(";")
        q = 1.0
        if params.strip().startswith("q="):
            try:
                q = float(params.strip()[2:])
            except ValueError:
                continue
        if q > 0 and tag.strip() != "*":
            ranked.append((-q, position, tag))
    for _, _, tag in sorted(ranked):
        found = match(tag)
        if found is not None:
            return found
    return None


def choose(query: str | None, accept_language: str, default: str) -> tuple[str, bool]:
    """(language, chosen by `?lang=`): the query's, else the browser's, else the venue's default."""
    asked = match(query) if query else None
    if asked is not None:
        return asked, True
    return from_accept_language(accept_language) or default, False


def catalog(lang: str) -> Catalog:
    """The gettext translations of `lang`, compiled from its shipped `.po` (English: none needed)."""
    if lang == SOURCE_LANGUAGE:
        return gettext.NullTranslations()
    po = importlib.resources.files(PACKAGE) / "locale" / locale_id(lang) / "LC_MESSAGES" / f"{DOMAIN}.po"
    with po.open("rb") as f:
        parsed = read_po(f, locale=locale_id(lang), domain=DOMAIN)
    mo = io.BytesIO()
    write_mo(mo, parsed)
    mo.seek(0)
    return Translations(mo, domain=DOMAIN)


def locale_id(lang: str) -> str:
    """The gettext/CLDR name of a language tag (pt-BR: pt_BR)."""
    return lang.replace("-", "_")


class Formats:
    """Dates, times and numbers in one language's format, in the venue's time zone."""

    def __init__(self, lang: str, timezone: str) -> None:
        self.locale = Locale.parse(locale_id(lang))
        self.zone = ZoneInfo(timezone)

    def time(self, at: float) -> str:
        """A press's time of day (14:05, 2:05 PM)."""
        return format_time(datetime.fromtimestamp(at, tz=UTC), "short", tzinfo=self.zone, locale=self.locale)

    def moment(self, at: float) -> str:
        """A press's date and time (06/12/2026 14:05, 12/6/26, 2:05 PM)."""
        return format_datetime(
            datetime.fromtimestamp(at, tz=UTC), "short", tzinfo=self.zone, locale=self.locale
        )

    def number(self, value: float, digits: int = 1) -> str:
        """A number with `digits` decimals (1,5 in pt-BR and es, 1.5 in en)."""
        pattern = "#,##0" + ("." + "0" * digits if digits else "")
        return format_decimal(value, format=pattern, locale=self.locale)
