"""Logging set-up shared by every command: text lines or one JSON object per line.

``configure_logging(settings)`` replaces the root logger's handlers with one
stderr handler whose format follows ``log_format`` (``RUM_LOG_FORMAT``):

- ``text``: ``[time] [pid] [LEVEL] logger: message key=value...``
- ``json``: ``{"time", "level", "logger", "message", ...extra fields}``, one
  object per line, with ``exception`` holding a traceback when there is one.

Extra fields are what a caller passes as ``extra={...}``. What goes into a log
record is the caller's responsibility: the pipeline never logs client IPs,
user agents, context values or any other part of an action's payload (bad
rows carry those, on their own topic).
"""

from __future__ import annotations

import logging
import sys
from datetime import UTC, datetime
from typing import IO, Any

import orjson

from pipeline.settings import Settings

#: Attributes every LogRecord has; anything else on a record came from ``extra``.
_STANDARD = frozenset(
    vars(logging.LogRecord("", logging.INFO, "", 0, "", None, None)).keys()
    | {"message", "asctime", "taskName"}
)
#: Marks the handler configure_logging installed, so a second call replaces it.
_MARK = "_rum_pipeline_handler"
TEXT_FORMAT = "[%(asctime)s] [%(process)d] [%(levelname)s] %(name)s: %(message)s"


def extra_fields(record: logging.LogRecord) -> dict[str, Any]:
    """The fields a caller added to ``record`` with ``extra={...}``."""
    return {k: v for k, v in vars(record).items() if k not in _STANDARD and not k.startswith("_")}


def _default(value: Any) -> str:
    # Extra fields may hold any object (a Path, an exception...): their text form.
    return str(value)


class JsonFormatter(logging.Formatter):
    """One JSON object per record: time (UTC, ISO 8601), level, logger, message, extra fields."""

    def format(self, record: logging.LogRecord) -> str:
        """The record as a single line of JSON."""
        time = datetime.fromtimestamp(record.created, UTC)
        entry: dict[str, Any] = {
            "time": time.isoformat(timespec="milliseconds").replace("+00:00", "Z"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        for key, value in extra_fields(record).items():
            entry.setdefault(key, value)  # an extra field never hides a standard one
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        elif record.exc_text:
            entry["exception"] = record.exc_text
        if record.stack_info:
            entry["stack"] = self.formatStack(record.stack_info)
        return orjson.dumps(entry, default=_default, option=orjson.OPT_NON_STR_KEYS).decode()


class TextFormatter(logging.Formatter):
    """The usual text line, followed by the extra fields as ``key=value``."""

    def __init__(self) -> None:
        super().__init__(TEXT_FORMAT)

    def format(self, record: logging.LogRecord) -> str:
        """The record as text; extra fields appended to the first line."""
        line = super().format(record)
        extra = extra_fields(record)
        if not extra:
            return line
        first, sep, rest = line.partition("\n")
        pairs = " ".join(f"{k}={v}" for k, v in extra.items())
        return f"{first} {pairs}{sep}{rest}"


def make_formatter(log_format: str) -> logging.Formatter:
    """The formatter for a ``log_format`` setting value (``text`` or ``json``)."""
    if log_format == "json":
        return JsonFormatter()
    if log_format == "text":
        return TextFormatter()
    raise ValueError(f"unknown log format {log_format!r}: expected text or json")


class _StderrHandler(logging.StreamHandler):
    """Writes to whatever ``sys.stderr`` is at the time of the record (tests and CLIs swap it)."""

    @property
    def stream(self) -> IO[str]:
        return sys.stderr

    @stream.setter
    def stream(self, value: IO[str]) -> None:
        pass  # always the current sys.stderr


def configure_logging(settings: Settings, *, level: str | None = None, stream: IO[str] | None = None) -> None:
    """Send every log record to ``stream`` (default: stderr) in ``settings.log.format``.

    The root level is ``level``, else ``settings.log.level``. Safe to call
    again: it replaces the handler it installed before and leaves other
    handlers alone.
    """
    handler: logging.Handler = _StderrHandler() if stream is None else logging.StreamHandler(stream)
    handler.setFormatter(make_formatter(settings.log.format))
    setattr(handler, _MARK, True)
    root = logging.getLogger()
    for old in [h for h in root.handlers if getattr(h, _MARK, False)]:
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel((level or settings.log.level).upper())
    logging.captureWarnings(True)
