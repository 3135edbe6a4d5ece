"""Press inputs, one module each: ENTER on a terminal, a GPIO button, a serial button box.

Each input calls `press(button, at)` with the time taken the moment the button fired; the listener
(trigger/listen.py) maps the button to cameras, journals and hands the press to Redis.
"""
