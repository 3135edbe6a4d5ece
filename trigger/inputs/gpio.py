"""GPIO input: gpiozero Buttons (pull-up, pressed = pulled to GND = falling edge), debounced, optional LED.

The LED answers the presser: two slow blinks = accepted; a fast flicker (ERROR_BLINKS) = not taken
(the camera is not recording, or the press could not be saved).

gpiozero picks the pin library itself (lgpio on a Pi 5, RPi.GPIO/pigpio on older ones); tests set
`gpiozero.Device.pin_factory = MockFactory()`. The debounce is also done here in software, because not
every pin factory honours `bounce_time` (the mock one ignores it) and a bouncing contact must never make
two highlights.
"""

from __future__ import annotations

import threading
import time
import warnings
from collections.abc import Callable
from typing import Any

from common.log import event, get_logger
from common.timeutil import now
from trigger.inputs import OnButton, safe_on_button

log = get_logger(__name__)

# The LED's two answers: (on seconds, off seconds, blinks). Distinct at a glance from across a court.
ACCEPTED_BLINKS = (0.15, 0.15, 2)
ERROR_BLINKS = (0.06, 0.06, 8)


class GpioInput:
    """One Button per BCM pin; `on_button(str(pin), at)` once per debounce window."""

    def __init__(self, pins: list[int], debounce_ms: int, on_button: OnButton, led_pin: int = 0) -> None:
        from gpiozero import LED, Button  # imported here: only the GPIO input needs a pin library

        self.on_button = safe_on_button(on_button, "gpio")
        self.debounce = debounce_ms / 1000.0
        self.last: dict[int, float] = {}
        self.lock = threading.Lock()
        self.buttons: list[Any] = []
        # gpiozero warns once per pin library it could not load; say it in one line instead.
        with warnings.catch_warnings(record=True) as tried:
            warnings.simplefilter("always")
            try:
                for pin in pins:
                    button = Button(pin, pull_up=True, bounce_time=self.debounce or None)
                    button.when_pressed = self._handler(pin)
                    self.buttons.append(button)
                self.led = LED(led_pin) if led_pin else None
            except Exception as exc:
                notes = "; ".join(str(w.message) for w in tried)
                raise RuntimeError(f"{exc}{' (' + notes + ')' if notes else ''}") from None

    def _handler(self, pin: int) -> Callable[[], None]:
        def pressed() -> None:
            at = now()  # first thing: the press time is the button's, not the queue's
            mono = time.monotonic()
            with self.lock:
                if mono - self.last.get(pin, -1e9) < self.debounce:
                    return
                self.last[pin] = mono
            self.on_button(str(pin), at)  # never raises: gpiozero's callback thread must live on

        return pressed

    def start(self) -> None:
        """Buttons are live from construction; just say so."""
        event(log, "input_ready", input="gpio", pins=[b.pin.info.name for b in self.buttons])

    def accepted(self) -> None:
        """Blink the status LED twice (in the background) when a press was accepted."""
        self._blink(*ACCEPTED_BLINKS)

    def refused(self) -> None:
        """Flicker the status LED fast when a press was not taken (camera down, or nowhere to save it)."""
        self._blink(*ERROR_BLINKS)

    def _blink(self, on: float, off: float, n: int) -> None:
        if self.led is None:
            return
        try:
            self.led.blink(on_time=on, off_time=off, n=n, background=True)
        except Exception as exc:  # a broken LED must not break the button
            event(log, "led_failed", level=30, error=repr(exc))

    def close(self) -> None:
        """Release the pins."""
        for b in self.buttons:
            b.close()
        if self.led is not None:
            self.led.close()
