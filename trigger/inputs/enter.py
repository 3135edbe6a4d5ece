"""ENTER input: every line on standard input is one press (the text of the line is ignored)."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import TextIO

from common.log import event, get_logger
from common.timeutil import now

log = get_logger(__name__)

BUTTON = "enter"


class EnterInput:
    """Reads lines from a stream in a daemon thread; calls `on_eof` when the stream ends."""

    def __init__(
        self, stream: TextIO, press: Callable[[str, float], None], on_eof: Callable[[], None]
    ) -> None:
        self.stream, self.press, self.on_eof = stream, press, on_eof
        self.thread = threading.Thread(target=self._run, name="enter-input", daemon=True)

    def start(self) -> None:
        """Start reading."""
        event(log, "input_ready", input="enter", msg="press ENTER for a highlight")
        self.thread.start()

    def _run(self) -> None:
        for _line in self.stream:
            self.press(BUTTON, now())  # the time is taken as the line arrives
        event(log, "input_closed", input="enter")
        self.on_eof()

    def close(self) -> None:
        """Nothing to release (the reader thread is a daemon)."""
