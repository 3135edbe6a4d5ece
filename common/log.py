"""Structured logging: one JSON object per line off a terminal, readable text on one; never secrets.

Use `log = get_logger(__name__)` and `log.info("segment closed", extra=fields(camera="cam1", seg=...))`
or the shorthand `event(log, "segment_closed", camera="cam1")`. Every record passes through `redact`,
which masks URL credentials, URL query strings (pre-signed URLs) and registered secrets.
"""

from __future__ import annotations

import json
import logging
import os
import re
import sys
from typing import Any

from common.timeutil import iso

_SECRETS: set[str] = set()
# The registered secrets as one alternation (longest first), rebuilt when one is added: one pass over
# the text whatever the number of secrets.
_SECRETS_RE: list[re.Pattern[str] | None] = [None]
_PROCESS = {"name": os.path.basename(sys.argv[0]) if sys.argv and sys.argv[0] else "gravanois"}
_STD_ATTRS = set(logging.LogRecord("", 0, "", 0, "", None, None).__dict__) | {"message", "asctime"}
# Every pattern below scans each character a bounded number of times (possessive `*+`/`++`, and no
# match that can fail after a long scan and be retried one character later), so `redact` is linear in
# the text: a job argument of megabytes must not block a worker. A URL's scheme is matched only from
# the start of a run of scheme characters (the look-behind), then checked in Python (`_creds`):
# matching `[a-z][a-z0-9+.-]*://` directly restarts at every letter of a long run (40 KB took 16 s).
_URL_CREDS = re.compile(r"(?<![a-z0-9+.-])(?P<run>[a-z0-9+.-]++)://(?P<creds>[^/@\s]++)@", re.I)
_SCHEME_START = re.compile(r"[a-z]", re.I)
_URL_QUERY = re.compile(r"(?P<url>https?://[^\s?\"']++)(?P<query>\?[^\s\"']*+)?", re.I)
_HEADERS = re.compile(r"(?i)(X-Signature|Authorization)(['\"]?\s*[:=]\s*['\"]?)([^'\",\s]+(?: [^'\",\s]+)?)")


def register_secret(value: str | None) -> None:
    """Never let `value` appear in a log line from now on."""
    if value and len(value) >= 4 and value not in _SECRETS:
        _SECRETS.add(value)
        ordered = sorted(_SECRETS, key=len, reverse=True)
        _SECRETS_RE[0] = re.compile("|".join(re.escape(x) for x in ordered))


def redact(text: str) -> str:
    """Mask credentials in URLs, query strings (pre-signed URLs), auth headers and registered secrets."""
    text = _URL_CREDS.sub(_creds, text)
    text = _URL_QUERY.sub(lambda m: f"{m['url']}?***" if m["query"] is not None else m[0], text)
    text = _HEADERS.sub(lambda m: f"{m[1]}{m[2]}***", text)
    secrets = _SECRETS_RE[0]
    return secrets.sub("***", text) if secrets is not None else text


def _creds(m: re.Match[str]) -> str:
    """`scheme://user:pass@` → `scheme://***@`; a scheme starts with a letter (`1http` → `http`)."""
    if _SCHEME_START.search(m["run"]) is None:
        return m[0]
    return f"{m['run']}://***@"


# The log record's attribute that carries an event's fields (`fields`); not a Redis name (common.keys).
FIELDS = "gn"


def fields(**kw: Any) -> dict[str, Any]:
    """`extra=` payload for a log call; keys become JSON fields."""
    return {FIELDS: kw}


def event(logger: logging.Logger, name: str, level: int = logging.INFO, msg: str = "", **kw: Any) -> None:
    """Log a named event with fields: `event(log, "ffmpeg_restart", camera="cam1", backoff=2.0)`."""
    logger.log(level, msg or name.replace("_", " "), extra=fields(event=name, **kw))


class JsonFormatter(logging.Formatter):
    """One JSON object per line: ts, level, process, logger, msg and the record's fields."""

    def format(self, record: logging.LogRecord) -> str:
        out: dict[str, Any] = {
            "ts": iso(record.created),
            "level": record.levelname.lower(),
            "process": _PROCESS["name"],
            "pid": record.process,
            "logger": record.name,
            "msg": record.getMessage(),
        }
        out.update(getattr(record, FIELDS, {}) or {})
        for key, value in record.__dict__.items():
            if key not in _STD_ATTRS and key != FIELDS and not key.startswith("_"):
                out.setdefault(key, value)
        if record.exc_info:
            out["exc"] = self.formatException(record.exc_info)
        return redact(json.dumps(out, default=str, ensure_ascii=False))


class TextFormatter(logging.Formatter):
    """`12:00:01 INFO  recorder: segment closed camera=cam1 seg=…` for people at a terminal."""

    def format(self, record: logging.LogRecord) -> str:
        extra = " ".join(f"{k}={v}" for k, v in (getattr(record, FIELDS, {}) or {}).items() if k != "event")
        line = f"{self.formatTime(record, '%H:%M:%S')} {record.levelname:<7} {_PROCESS['name']}: "
        line += record.getMessage() + (f"  {extra}" if extra else "")
        if record.exc_info:
            line += "\n" + self.formatException(record.exc_info)
        return redact(line)


def setup_logging(process: str, level: str = "INFO", fmt: str = "auto", stream: Any = None) -> None:
    """Configure the root logger once per process: JSON lines unless `fmt` is text or auto on a tty."""
    stream = stream or sys.stderr
    _PROCESS["name"] = process
    use_json = fmt == "json" or (fmt == "auto" and not (hasattr(stream, "isatty") and stream.isatty()))
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter() if use_json else TextFormatter())
    root = logging.getLogger()
    for h in list(root.handlers):
        root.removeHandler(h)
    root.addHandler(handler)
    root.setLevel(level.upper())
    for noisy in ("urllib3", "rq.worker", "rq.scheduler"):
        logging.getLogger(noisy).setLevel(max(logging.WARNING, root.level))


def get_logger(name: str) -> logging.Logger:
    """A module logger."""
    return logging.getLogger(name)
