"""Capture: the highlight window around a press, when presses count, and the button that makes them."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from common.hours import parse_open_hours
from common.settings.fields import LIVE, RESTART, Check, Concern, SettingsError, env_name, invalid, setting

# Longest pre-roll or post-roll a highlight may ask for (the build job refuses more, too).
MAX_SIDE_SECONDS = 900.0


def _check_open_hours(text: str) -> None:
    if text:  # empty: always open
        try:
            parse_open_hours(text)
        except ValueError as exc:  # common.hours says what is wrong in one line naming the setting
            raise SettingsError(str(exc)) from None


def _check_timezone(name: str) -> None:
    try:
        ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise SettingsError(
            f"{env_name('timezone')}={name!r} is not a known time zone: "
            "use an IANA name like America/Sao_Paulo"
        ) from None


def _window_not_empty(s: CaptureSettings) -> None:
    if s.pre_seconds + s.post_seconds <= 0:
        raise invalid("post_seconds", "pre + post must be more than 0 seconds")


@dataclass(frozen=True)
class CaptureSettings(Concern):
    """What a press captures and when it counts: window, cooldown, opening hours, GPIO and serial."""

    title = "Capture: the highlight window, presses, the button"
    cross_checks: ClassVar[tuple[Check, ...]] = (_window_not_empty,)

    pre_seconds: float = setting(
        40.0,
        "Seconds before the press in the highlight.",
        at_least=0,
        at_most=MAX_SIDE_SECONDS,
        unit="seconds",
        remote=RESTART,
    )
    post_seconds: float = setting(
        10.0,
        "Seconds after the press in the highlight.",
        at_least=0,
        at_most=MAX_SIDE_SECONDS,
        unit="seconds",
        remote=RESTART,
    )
    cooldown_seconds: float = setting(
        5.0,
        "A second press on a camera within this many seconds is ignored.",
        at_least=0,
        remote=LIVE,
    )
    open_hours: str = setting(
        "",
        "Opening hours like 08:00-23:00 (empty: always open).",
        check=_check_open_hours,
        remote=LIVE,
    )
    timezone: str = setting(
        "America/Sao_Paulo",
        "Venue time zone for opening hours (IANA name).",
        check=_check_timezone,
        remote=LIVE,
    )
    gpio_pin: int = setting(17, "BCM pin of the button (pull-up, press = low).")
    gpio_debounce_ms: int = setting(300, "Button debounce, in milliseconds.", at_least=0)
    gpio_led_pin: int = setting(0, "BCM pin of a status LED that blinks on an accepted press (0: none).")
    buttons: str = setting(
        "",
        'Map of buttons to cameras as JSON, e.g. {"17": "all", "BTN_2": "cam2"} (empty: all).',
        remote=RESTART,
    )
    serial_port: str = setting("", "Serial trigger device (empty: auto-detect under /dev/serial/by-id).")
    serial_baud: int = setting(115200, "Serial trigger baud rate.")
