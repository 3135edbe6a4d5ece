"""Serial input: a USB button box (e.g. a Pico) writing one line token per press: BTN_REPLAY, BTN_1, BTN_2 …

The port is GN_SERIAL_PORT or the first device under /dev/serial/by-id. When the device disappears
(unplugged, reset) the reader closes it and looks for it again every second, so re-plugging recovers.
"""

from __future__ import annotations

import contextlib
import glob
import os
import re
import threading
from collections.abc import Callable

from common.log import event, get_logger
from common.timeutil import now
from trigger.inputs import OnButton, input_thread, safe_on_button

log = get_logger(__name__)

BY_ID = "/dev/serial/by-id/*"
TOKEN = re.compile(r"^BTN_[A-Z0-9_]{1,24}$")
RETRY_SECONDS = 1.0


def detect_port(configured: str, pattern: str = BY_ID) -> str | None:
    """The configured port if it exists, else the first stable by-id device (None if there is none)."""
    if configured:
        return configured if os.path.exists(configured) else None
    found = sorted(glob.glob(pattern))
    return found[0] if found else None


def parse_token(raw: bytes) -> str | None:
    """A line from the device → its button token (`BTN_REPLAY`, `BTN_1`), or None for noise."""
    text = raw.decode("ascii", errors="replace").strip().upper()
    return text if TOKEN.fullmatch(text) else None


class SerialInput:
    """Reads tokens in a daemon thread, reconnecting until `stop` is set."""

    def __init__(
        self,
        port: str,
        baud: int,
        on_button: OnButton,
        stop: threading.Event,
        on_death: Callable[[str], None] | None = None,
    ) -> None:
        self.port, self.baud, self.stop = port, baud, stop
        # Wrapped: an error in a press must not read as a lost device (the except below) nor end the loop.
        self.on_button = safe_on_button(on_button, "serial")
        self.thread = input_thread("serial-input", self._run, on_death or (lambda why: stop.set()))
        self.connected = threading.Event()

    def start(self) -> None:
        """Start the reader."""
        self.thread.start()

    def _run(self) -> None:
        import serial  # pyserial; only the serial input needs it

        waiting_logged = False
        while not self.stop.is_set():
            path = detect_port(self.port)
            if path is None:
                if not waiting_logged:
                    where = self.port or BY_ID
                    event(
                        log,
                        "serial_waiting",
                        level=30,
                        port=where,
                        msg="no serial button box found; retrying",
                    )
                    waiting_logged = True
                self.stop.wait(RETRY_SECONDS)
                continue
            try:
                dev = serial.Serial(path, self.baud, timeout=0.5)
            except (serial.SerialException, OSError) as exc:
                event(log, "serial_open_failed", level=30, port=path, error=str(exc))
                self.stop.wait(RETRY_SECONDS)
                continue
            waiting_logged = False
            event(log, "input_ready", input="serial", port=path)
            self.connected.set()
            try:
                self._read(dev)
            except (serial.SerialException, OSError) as exc:
                event(log, "serial_lost", level=30, port=path, error=str(exc), msg="reconnecting")
            finally:
                self.connected.clear()
                with contextlib.suppress(serial.SerialException, OSError):
                    dev.close()
            self.stop.wait(RETRY_SECONDS)

    def _read(self, dev: object) -> None:
        buf = b""
        while not self.stop.is_set():
            chunk = dev.read(64)  # type: ignore[attr-defined]
            if not chunk:
                continue
            buf += chunk
            while b"\n" in buf:
                line, buf = buf.split(b"\n", 1)
                at = now()
                token = parse_token(line)
                if token is None:
                    if line.strip():
                        event(log, "serial_noise", level=30, line=line[:40].decode("ascii", "replace"))
                    continue
                self.on_button(token, at)
            buf = buf[-256:]  # a device spewing without newlines cannot grow memory

    def close(self) -> None:
        """The thread ends by itself once `stop` is set."""
