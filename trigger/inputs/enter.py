"""ENTER input: every line on standard input is one press (the text of the line is ignored)."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import IO, Any

from common.log import event, get_logger
from common.timeutil import now
from trigger.inputs import OnButton, input_thread, safe_on_button

log = get_logger(__name__)

BUTTON = "enter"
# A read error is retried after a pause; this many in a row means the terminal is gone for good
# (a pty whose other end closed answers EIO forever): the thread then dies and the process ends.
MAX_READ_ERRORS = 5
READ_ERROR_PAUSE = 0.2


class EnterInput:
    """Reads lines from a stream in a daemon thread; calls `on_eof` when the stream ends."""

    def __init__(
        self,
        stream: IO[Any],
        on_button: OnButton,
        on_eof: Callable[[], None],
        on_death: Callable[[str], None] | None = None,
    ) -> None:
        # Bytes, not text: a line that is not UTF-8 is still a press, never a UnicodeDecodeError.
        self.stream = getattr(stream, "buffer", stream)
        self.on_button, self.on_eof = safe_on_button(on_button, "enter"), on_eof
        self.thread = input_thread("enter-input", self._run, on_death or (lambda why: on_eof()))

    def start(self) -> None:
        """Start reading."""
        event(log, "input_ready", input="enter", msg="press ENTER for a highlight")
        self.thread.start()

    def _run(self) -> None:
        errors = 0
        while True:
            try:
                line = self.stream.readline()
            except OSError as exc:
                errors += 1
                event(log, "input_error", level=40, input="enter", error=str(exc), errors=errors)
                if errors >= MAX_READ_ERRORS:
                    raise
                time.sleep(READ_ERROR_PAUSE)
                continue
            errors = 0
            if not line:
                break
            self.on_button(BUTTON, now())  # the time is taken as the line arrives
        event(log, "input_closed", input="enter")
        self.on_eof()

    def close(self) -> None:
        """Nothing to release (the reader thread is a daemon)."""
