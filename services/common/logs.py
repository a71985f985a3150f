"""Logging set up once, in each service's ``__main__``: JSON lines or readable text.

Lines about a record or a request carry its trace id as the ``trace_id`` field
(``extra={"trace_id": ...}``); other fields given in ``extra`` (topic, partition, offset,
key) become fields of the JSON line too. At INFO a service writes at most one line per
batch; per-record lines are DEBUG.
"""

from __future__ import annotations

import logging
import sys
from typing import Any

from pythonjsonlogger.json import JsonFormatter

FORMATS = ("text", "json")
TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s %(message)s"
# Fields of every JSON line beside ``time`` (ISO 8601, UTC); ``extra`` fields follow.
JSON_FIELDS = ("levelname", "name", "message")


class TextFormatter(logging.Formatter):
    """The text line, followed by ``trace_id=...`` when the line is about a record."""

    def format(self, record: logging.LogRecord) -> str:
        line = super().format(record)
        trace_id = getattr(record, "trace_id", None)
        return f"{line} trace_id={trace_id}" if trace_id else line


def formatter(log_format: str) -> logging.Formatter:
    if log_format == "json":
        return JsonFormatter(
            list(JSON_FIELDS),
            rename_fields={"levelname": "level", "name": "logger"},
            timestamp="time",
            json_ensure_ascii=False,
        )
    if log_format == "text":
        return TextFormatter(TEXT_FORMAT)
    raise ValueError(f"LOG_FORMAT must be one of {', '.join(FORMATS)}, got {log_format!r}")


def configure_logging(level: str, log_format: str = "text", stream: Any = None) -> None:
    handler = logging.StreamHandler(stream or sys.stdout)
    handler.setFormatter(formatter(log_format.lower()))
    root = logging.getLogger()
    for existing in list(root.handlers):
        root.removeHandler(existing)
    root.addHandler(handler)
    root.setLevel(level.upper())
    # aiokafka logs every reconnection attempt at ERROR; our own lines say what matters.
    logging.getLogger("aiokafka").setLevel(max(logging.WARNING, logging.root.level))
    # One access line per request would be a second INFO line per batch: only at DEBUG
    # (fluxo_http_request_duration_seconds counts every request).
    debug = logging.root.level <= logging.DEBUG
    logging.getLogger("aiohttp.access").setLevel(logging.DEBUG if debug else logging.WARNING)
