"""The press: a one-shot CLI, ENTER on a terminal, a GPIO button or a serial button box."""
