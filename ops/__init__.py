"""Operator commands: the box's status, failed jobs, the demo and the web app."""
