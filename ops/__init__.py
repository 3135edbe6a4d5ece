"""Operator commands: `status`, `metrics`, `failed`, `demo` and the web app; may import every package."""
