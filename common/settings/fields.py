"""The field helper: one `setting(...)` declaration carries a setting's whole rule.

A field's default, help text, parser, allowed choices or numeric range and its own check are declared
together (stored in the field's metadata as a `Rule`); core.py's loops parse, validate, describe and
export every field through its `Rule`, so none of them knows a setting by name.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

ENV_PREFIX = "GN_"

# A value's own check: raises ValueError("what to change") for `GN_X is not valid: what to change`,
# or a SettingsError when it words the whole line itself.
Check = Callable[[Any], None]


class SettingsError(ValueError):
    """A setting has a value the box cannot run with; the message is one line for the operator."""


def env_name(field_name: str) -> str:
    """The environment variable of a settings field."""
    return ENV_PREFIX + field_name.upper()


def invalid(field_name: str, what_to_do: str) -> SettingsError:
    """The one line that blames a setting: `GN_X is not valid: <what to change>`."""
    return SettingsError(f"{env_name(field_name)} is not valid: {what_to_do}")


@dataclass(frozen=True)
class Parser:
    """How a setting's text becomes its value (`read`) and its value text again (`write`)."""

    read: Callable[[str], Any]
    # What the text must look like: `GN_X='…' is not valid: set it to <kind>` when `read` refuses it.
    kind: str = "a valid value"
    write: Callable[[Any], str] = str


def _read_bool(raw: str) -> bool:
    low = raw.lower()
    if low in ("1", "true", "yes", "on"):
        return True
    if low in ("0", "false", "no", "off"):
        return False
    raise ValueError(raw)


def _read_float(raw: str) -> float:
    value = float(raw)
    if not math.isfinite(value):  # float() takes nan and inf; no setting means either
        raise ValueError(raw)
    return value


BOOL = Parser(_read_bool, "true or false", lambda v: "true" if v else "false")
INT = Parser(int, "a whole number")
FLOAT = Parser(_read_float, "a finite number")
TEXT = Parser(str)
PATH = Parser(lambda raw: Path(raw).expanduser())
# The parser of a field that declares none, by the field's type (`X | None`: by X).
BY_TYPE: dict[Any, Parser] = {bool: BOOL, int: INT, float: FLOAT, str: TEXT, Path: PATH}


# How a setting the fleet may set (`remote=`) takes effect: at once in the processes that read it, or
# when the programs restart (at a quiet moment: no build running, no press pending).
LIVE = "live"
RESTART = "restart"


@dataclass(frozen=True)
class Rule:
    """What one setting declares besides its default: its meaning and what values it allows."""

    help: str
    parse: Parser | None = None  # None: BY_TYPE of the field's type
    choices: tuple[str, ...] = ()
    at_least: float | None = None
    above: float | None = None
    at_most: float | None = None
    unit: str = ""  # named after a range's numbers: "seconds", "days"
    zero: str = ""  # what 0 means, named where a negative value is refused
    check: Check | None = None
    secret: bool = False  # never logged (Settings.secrets)
    shown: str = ""  # the default as .env.example shows it, for a default computed at start
    remote: str = ""  # settable from the fleet: LIVE (taken at once) or RESTART (programs restart); "" no

    def problem(self, value: Any) -> str | None:
        """What to change about `value`, or None when this setting allows it."""
        # Flags hand floats over already parsed (click takes "nan"); a NaN passes every `<` check.
        if isinstance(value, float) and not math.isfinite(value):
            return "it must be a finite number"
        if self.choices and value not in self.choices:
            return f"use one of {', '.join(self.choices)}"
        if value is not None and not self._in_range(value):
            return self.range_text()
        if self.check is not None:
            try:
                self.check(value)
            except SettingsError:
                raise
            except ValueError as exc:
                return str(exc)
        return None

    def _in_range(self, value: float) -> bool:
        return (
            (self.at_least is None or value >= self.at_least)
            and (self.above is None or value > self.above)
            and (self.at_most is None or value <= self.at_most)
        )

    def range_text(self) -> str:
        """The allowed range in words, like `it must be from 0 to 900 seconds`."""
        if self.at_least is not None and self.at_most is not None:
            words = f"from {self.at_least:g} to {self.at_most:g}"
        elif self.at_least == 0:
            return "it cannot be negative" + (f" (0 means {self.zero})" if self.zero else "")
        else:
            bounds = (
                ("more than", self.above),
                ("at least", self.at_least),
                ("at most", self.at_most),
            )
            words = " and ".join(f"{bound} {number:g}" for bound, number in bounds if number is not None)
        return f"it must be {words}" + (f" {self.unit}" if self.unit else "")


def setting(
    default: Any = dataclasses.MISSING,
    help: str = "",
    *,
    factory: Callable[[], Any] | None = None,
    parse: Parser | None = None,
    choices: tuple[str, ...] = (),
    at_least: float | None = None,
    above: float | None = None,
    at_most: float | None = None,
    unit: str = "",
    zero: str = "",
    check: Check | None = None,
    secret: bool = False,
    shown: str = "",
    remote: str = "",
) -> Any:
    """A settings field: its default (or `factory`, then `shown` says it in words) and its rule."""
    if not help:
        raise TypeError("every setting needs a help text")
    if remote not in ("", LIVE, RESTART) or (remote and secret):
        raise TypeError("remote is LIVE or RESTART, and never for a secret")
    if factory is not None and not shown:
        raise TypeError("a default computed at start needs `shown`, the text .env.example gives")
    rule = Rule(help, parse, choices, at_least, above, at_most, unit, zero, check, secret, shown, remote)
    if factory is not None:
        return dataclasses.field(default_factory=factory, metadata={"rule": rule})
    return dataclasses.field(default=default, metadata={"rule": rule})


def rule_of(f: dataclasses.Field[Any]) -> Rule:
    """The rule a settings field was declared with."""
    rule: Rule = f.metadata["rule"]
    return rule


def url(*schemes: str, like: str, optional: bool = False) -> Check:
    """A check that a value is a URL of one of `schemes` (or empty, when `optional`)."""

    def check(value: str) -> None:
        if not (optional and not value) and not value.startswith(schemes):
            raise ValueError(f"use a URL like {like}")

    return check


@dataclass(frozen=True)
class Concern:
    """A group of settings (one module each); the combined Settings inherits every concern's fields.

    `cross_checks` are the rules that join several settings; they run after every setting has passed
    its own rule, so that an out-of-range value is blamed on itself.
    """

    title: ClassVar[str]  # the section of .env.example that lists this concern's settings
    cross_checks: ClassVar[tuple[Check, ...]] = ()
