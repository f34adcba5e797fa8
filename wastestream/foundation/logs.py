"""One logging set-up for every process: readable lines by default, JSON lines on request.

`WS_LOG_FORMAT=json` (Settings.log_format) makes each record one JSON object per line, so a log
shipper (journald, Loki, Elasticsearch) can index it without a regex: `ts`, `level`, `logger`,
`msg`, and, where the code knows them, `site`, `device` and `msg_id` as fields of their own.

Those three come from, in order: the call's `extra=` (`log.warning(..., extra=fields(...))`), the
current task's context (`bind(device=...)`: a contextvar, so each asyncio task of an edge agent
carries its own device), and the process's own (`bind_process(site=...)`: an edge agent is one
site, and its driver threads do not inherit a contextvar). The readable format shows them too,
as a `[site=... device=...]` suffix.
"""

from __future__ import annotations

import json
import logging
import sys
from collections.abc import Mapping
from contextvars import ContextVar
from datetime import UTC, datetime
from typing import Any, TextIO

CONTEXT_FIELDS = ("site", "device", "msg_id")
HUMAN_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s%(ws_context)s"
FORMATS = ("text", "json")
LEVELS = {"crit": "CRITICAL", "critical": "CRITICAL", "error": "ERROR", "warn": "WARNING",
          "warning": "WARNING", "info": "INFO", "debug": "DEBUG"}
"""The level names every `--log-level` accepts (Faust's `-l` spellings included), any case."""

_task_fields: ContextVar[Mapping[str, str] | None] = ContextVar("ws_log_fields", default=None)
_process_fields: dict[str, str] = {}


def fields(site: str | None = None, device: str | None = None, msg_id: str | None = None) -> dict[str, str]:
    """The `extra=` of one log call: only the fields that are known."""
    given = {"site": site, "device": device, "msg_id": msg_id}
    return {k: v for k, v in given.items() if v}


def topic_fields(topic: str) -> dict[str, str]:
    """Site and device of a device topic `ws/v1/{site}/{kind}/{device}/{event}` (else nothing)."""
    parts = topic.split("/")
    if len(parts) == 6 and parts[:2] == ["ws", "v1"]:
        return fields(site=parts[2], device=parts[4])
    return {}


def bind(**values: str) -> None:
    """Fields for every record the current task (and the tasks it starts) logs from now on."""
    _task_fields.set({**(_task_fields.get() or {}), **{k: v for k, v in values.items() if v}})


def bind_process(**values: str) -> None:
    """Fields for every record of this process, in every thread (an edge agent's site)."""
    _process_fields.update({k: v for k, v in values.items() if v})


def _context_of(record: logging.LogRecord) -> dict[str, str]:
    known = {**_process_fields, **(_task_fields.get() or {})}
    for name in CONTEXT_FIELDS:
        value = getattr(record, name, None)
        if value:
            known[name] = str(value)
    return {name: known[name] for name in CONTEXT_FIELDS if name in known}


class ContextFilter(logging.Filter):
    """Puts the context fields on each record (`ws_context`: the readable suffix)."""

    def filter(self, record: logging.LogRecord) -> bool:
        context = _context_of(record)
        record.ws_fields = context
        record.ws_context = (" [" + " ".join(f"{k}={v}" for k, v in context.items()) + "]") if context else ""
        return True


class JsonFormatter(logging.Formatter):
    """One JSON object per record, one line each (newlines in messages are escaped by JSON)."""

    def format(self, record: logging.LogRecord) -> str:
        doc: dict[str, Any] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname, "logger": record.name, "msg": record.getMessage(),
        }
        doc.update(getattr(record, "ws_fields", None) or _context_of(record))
        if record.exc_info:
            doc["exc"] = self.formatException(record.exc_info)
        if record.stack_info:
            doc["stack"] = self.formatStack(record.stack_info)
        return json.dumps(doc, ensure_ascii=False, default=str)


class HumanFormatter(logging.Formatter):
    """The readable line; tolerates records that did not pass the ContextFilter."""

    def __init__(self) -> None:
        super().__init__(HUMAN_FORMAT)

    def format(self, record: logging.LogRecord) -> str:
        if not hasattr(record, "ws_context"):
            ContextFilter().filter(record)
        return super().format(record)


def make_formatter(fmt: str | None = None) -> logging.Formatter:
    """The formatter for `fmt` (`text` | `json`; default: WS_LOG_FORMAT)."""
    return JsonFormatter() if _format(fmt) == "json" else HumanFormatter()


def _format(fmt: str | None) -> str:
    if fmt is None:
        from wastestream.foundation.settings import load_settings

        fmt = load_settings().log_format
    fmt = fmt.strip().lower() or "text"
    if fmt not in FORMATS:
        raise ValueError(f"WS_LOG_FORMAT must be one of {', '.join(FORMATS)}, not {fmt!r}")
    return fmt


def level_name(level: str | int) -> str:
    """`info`, `WARN`, `crit`, 20 ... → the logging module's name."""
    if isinstance(level, int):
        return logging.getLevelName(level)
    name = LEVELS.get(level.strip().lower())
    if name is None:
        raise ValueError(f"unknown log level {level!r}: one of {', '.join(LEVELS)}")
    return name


def configure(level: str | int = "info", fmt: str | None = None, stream: TextIO | None = None) -> None:
    """The root logger of this process: one handler on stderr in the chosen format."""
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.addFilter(ContextFilter())
    handler.setFormatter(make_formatter(fmt))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level_name(level))


def mode_logging_config(fmt: str | None = None) -> dict[str, Any]:
    """Faust's (mode's) dictConfig, merged with its own: its handler writes in our format."""
    factory = f"{__name__}.{'JsonFormatter' if _format(fmt) == 'json' else 'HumanFormatter'}"
    return {"version": 1, "merge": True, "formatters": {"default": {"()": factory},
                                                        "colored": {"()": factory}}}

