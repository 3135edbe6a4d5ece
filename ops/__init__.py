"""Operator commands: `status`, `metrics`, `failed`, `demo`, `camera probe`, the web app; may import all."""
