"""The box's settings: one frozen dataclass of every concern, loaded from CLI flags > environment > `.env`
> defaults, checked, described for `.env.example` and exported to child processes.

Every loop here goes over the fields and reads each one's declared rule (fields.py); none names a setting.
"""

from __future__ import annotations

import dataclasses
import functools
import os
import types
import typing
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from dotenv import dotenv_values

from common.settings import remote as remote_file
from common.settings.cameras import CameraSettings
from common.settings.capture import CaptureSettings
from common.settings.fields import (
    BY_TYPE,
    LIVE,
    Concern,
    Parser,
    SettingsError,
    env_name,
    invalid,
    rule_of,
)
from common.settings.fleet import FleetSettings
from common.settings.identity import IdentitySettings
from common.settings.jobs import JobSettings
from common.settings.render import RenderSettings
from common.settings.supervision import SupervisionSettings
from common.settings.upload import UploadSettings
from common.settings.web import WebSettings


@dataclass(frozen=True)
class Settings(
    # dataclasses put the fields of the last base first: the concerns are listed last one first, so that
    # the fields (and .env.example) read from identity to the box's supervision.
    SupervisionSettings,
    FleetSettings,
    WebSettings,
    UploadSettings,
    JobSettings,
    RenderSettings,
    CaptureSettings,
    CameraSettings,
    IdentitySettings,
):
    """All settings of the box. Field `x` is read from `GN_X`; see `.env.example` for meanings."""

    def secrets(self) -> list[str]:
        """Values that must never reach a log or a sidecar."""
        return [value for f in FIELDS if rule_of(f).secret and (value := getattr(self, f.name))]


# The concerns in the order .env.example lists them.
CONCERNS: tuple[type[Concern], ...] = tuple(c for c in reversed(Settings.__bases__) if issubclass(c, Concern))
FIELDS = dataclasses.fields(Settings)


def load_settings(
    overrides: dict[str, Any] | None = None,
    env_file: str | os.PathLike[str] | None = ".env",
    remote: bool = True,
) -> Settings:
    """Settings from CLI `overrides` > the fleet's (remote.py) > environment > `.env` file > defaults,
    validated. `remote=False` leaves the fleet's out (what the launcher hands supervisord's programs,
    who read the fleet's file themselves)."""
    file_values: dict[str, str | None] = {}
    if env_file is not None and Path(env_file).is_file():
        file_values = dotenv_values(env_file)
    values: dict[str, Any] = {}
    for f in FIELDS:
        name = env_name(f.name)
        raw = os.environ.get(name, file_values.get(name))
        if raw is not None and raw.strip() != "":
            values[f.name] = _parse(f, raw)
        elif raw is not None and _optional(f):
            values[f.name] = None
        elif raw is not None and (rule_of(f).shown or _text(f, f.default)) != "":
            # `GN_X=` with nothing after it is a mistake, not a wish for the default: say so rather
            # than silently becoming e.g. the host name (which changes every Redis key of the box).
            raise SettingsError(
                f"{name} is set but empty: give it a value, or remove the line to use the default "
                f"({_default_text(f)})"
            )
    # The fleet's settings live in the data folder (which the fleet cannot move): where a flag, the
    # environment or .env put it.
    default_dir = typing.cast(Path, _field("data_dir").default)
    data_dir = Path((overrides or {}).get("data_dir") or values.get("data_dir") or default_dir)
    for f, raw in _remote(remote_file.path_in(data_dir)).items() if remote else ():
        values[f.name] = _parse(f, raw)
    for key, value in (overrides or {}).items():
        if value is None:
            continue
        f = _field(key)
        values[key] = _parse(f, value) if isinstance(value, str) else value
    try:
        settings = Settings(**values)
    except TypeError as exc:  # pragma: no cover - programming error, not operator input
        raise SettingsError(str(exc)) from exc
    validate(settings)
    return settings


def _remote(path: Path) -> dict[dataclasses.Field[Any], str]:
    """The settings the fleet set (only those it may set), as text, by field."""
    settable = {env_name(f.name): f for f in FIELDS if rule_of(f).remote}
    given = remote_file.read(path).get("settings", {})
    return {settable[name]: remote_file.as_text(value) for name, value in given.items() if name in settable}


# The remote file as last read by this process: (its stat, the settings it set).
_LIVE_SEEN: dict[Path, tuple[tuple[int, int], dict[str, Any]]] = {}


def live(s: Settings) -> Settings:
    """`s` with the fleet's settings that apply at once (LIVE) as the remote file says now.

    Cheap (one stat while the file is unchanged): long-running processes call it where they use such a
    setting (a press, a job), so a cooldown or opening hours set from the fleet take effect without a
    restart. Settings that need one keep their start-up value until the programs restart.
    """
    path = remote_file.path_in(s.data_dir)
    try:
        st = path.stat()
        stamp = (st.st_mtime_ns, st.st_size)
    except OSError:
        stamp = (0, 0)
    seen = _LIVE_SEEN.get(path)
    if seen is None or seen[0] != stamp:
        given = {f.name: _parse(f, raw) for f, raw in _remote(path).items() if rule_of(f).remote == LIVE}
        seen = _LIVE_SEEN[path] = (stamp, given)
    changed = {name: value for name, value in seen[1].items() if getattr(s, name) != value}
    if not changed:
        return s
    fresh = dataclasses.replace(s, **changed)
    validate(fresh)
    return fresh


def validate(s: Settings) -> None:
    """Check each setting's own rule, then each concern's cross-field rules; one line for the first problem.

    The joined rules come last so that an out-of-range value is blamed on itself, not on e.g.
    GN_BUFFER_SECONDS.
    """
    for f in FIELDS:
        problem = rule_of(f).problem(getattr(s, f.name))
        if problem is not None:
            raise invalid(f.name, problem)
    for concern in CONCERNS:
        for check in concern.cross_checks:
            check(s)


def describe() -> list[tuple[str, str, str]]:
    """(variable, default as text, meaning) for every setting, in declaration order."""
    return [(env_name(f.name), rule_of(f).shown or _text(f, f.default), rule_of(f).help) for f in FIELDS]


def to_env(s: Settings) -> dict[str, str]:
    """The settings as GN_* environment variables (to hand to child processes)."""
    return {env_name(f.name): _text(f, getattr(s, f.name)) for f in FIELDS}


@functools.cache
def _hints() -> dict[str, Any]:
    return typing.get_type_hints(Settings)


def _field(name: str) -> dataclasses.Field[Any]:
    for f in FIELDS:
        if f.name == name:
            return f
    raise SettingsError(f"unknown setting {name!r}")


def _optional(f: dataclasses.Field[Any]) -> bool:
    hint = _hints()[f.name]
    return isinstance(hint, types.UnionType) and type(None) in hint.__args__


def parser_of(f: dataclasses.Field[Any]) -> Parser:
    """The parser a setting declares, or the one of its type (of X for `X | None`)."""
    declared = rule_of(f).parse
    if declared is not None:
        return declared
    hint = _hints()[f.name]
    if isinstance(hint, types.UnionType):
        hint = next(a for a in hint.__args__ if a is not type(None))
    return BY_TYPE[hint]


def _parse(f: dataclasses.Field[Any], raw: str) -> Any:
    """Turn the text of one setting into its typed value, or say what is wrong with it."""
    parser = parser_of(f)
    raw = raw.strip()
    try:
        return parser.read(raw)
    except SettingsError:
        raise
    except ValueError:
        raise SettingsError(f"{env_name(f.name)}={raw!r} is not valid: set it to {parser.kind}") from None


def _text(f: dataclasses.Field[Any], value: Any) -> str:
    return "" if value is None else parser_of(f).write(value)


def _default_text(f: dataclasses.Field[Any]) -> str:
    """The default of a setting in words, for an error message (a `<placeholder>` without its brackets)."""
    return (rule_of(f).shown or _text(f, f.default)).strip("<>") or "empty"
