"""Press inputs, one module each: ENTER on a terminal, a GPIO button, a serial button box.

Each input calls its `on_button(button, at)` with the time taken the moment the button fired; the listener
(trigger/listen.py) maps the button to cameras and hands the press to Redis (or the journal).

An input never lets an error end its loop: a failed press is logged and the next one is taken. A thread
that ends by an error all the same calls `on_death`, and the listener then stops the process, so that
supervisord starts a fresh one instead of leaving a live process deaf to the button.
"""

from __future__ import annotations

import threading
from collections.abc import Callable

from common.log import event, get_logger

log = get_logger(__name__)

# What an input calls when its button fires: (button, time taken at the button). The listener's
# `Listener.on_button` in the process; a test's own function in tests.
OnButton = Callable[[str, float], None]


def safe_on_button(on_button: OnButton, input_name: str) -> OnButton:
    """`on_button` that logs an error instead of raising it into the input's loop."""

    def call(button: str, at: float) -> None:
        try:
            on_button(button, at)
        except Exception as exc:  # a failed press must not silence the button for the next one
            event(log, "press_failed", level=40, input=input_name, button=button, error=repr(exc))

    return call


def input_thread(name: str, target: Callable[[], None], on_death: Callable[[str], None]) -> threading.Thread:
    """A daemon thread running `target`; if it ends by an exception, `on_death` gets one line saying why."""

    def run() -> None:
        try:
            target()
        except BaseException as exc:  # any death: the process must end so that it is restarted
            why = f"{name} stopped: {type(exc).__name__}: {exc}"
            event(log, "input_died", level=50, input=name, error=why)
            on_death(why)

    return threading.Thread(target=run, name=name, daemon=True)
