"""Operator commands: tools for the person installing the box (`gravanois camera probe`)."""
