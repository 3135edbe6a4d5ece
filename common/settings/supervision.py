"""Supervision: how many of which programs supervisord runs on the box (deploy/supervise.py; docs/pi.md)."""

from __future__ import annotations

from dataclasses import dataclass

from common.settings.fields import Concern, setting

# Inputs the supervised trigger listener can use (ENTER needs a terminal, which supervisord has not).
TRIGGER_INPUTS = ("gpio", "serial")


@dataclass(frozen=True)
class SupervisionSettings(Concern):
    """The programs deploy/supervise.py asks supervisord for, besides one recorder per camera."""

    title = "Supervision: the programs supervisord runs (deploy/supervise.py; see docs/pi.md)"

    workers: int = setting(
        0,
        "Build/render worker processes (0: one per camera and one more: a build holds its worker through "
        "its post-roll, so that a render never waits for a free one when every camera is pressed).",
        at_least=0,
        zero="one per camera and one more",
    )
    trigger_autostart: bool = setting(
        True,
        "Start the button listener (false on a box without a button; presses then come from "
        "`gravanois trigger press`).",
    )
    trigger_input: str = setting(
        "gpio",
        "Where the supervised listener takes presses from: gpio (the button) or serial (a USB button box).",
        choices=TRIGGER_INPUTS,
    )
