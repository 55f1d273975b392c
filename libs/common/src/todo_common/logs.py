"""structlog set-up shared by every process: JSON lines in production, readable on a terminal.

The standard library's loggers (hypercorn, alembic, celery, ...) go through the same processors, and
anything bound with `structlog.contextvars` (the request id) appears on every line.

A line written once per request (the API's access line) may skip structlog and the logging module
and go straight to the same stream: `log_output` says which format, level and stream were chosen.
"""

from __future__ import annotations

import logging
import os
import sys
from dataclasses import dataclass
from typing import Any, Literal, TextIO

import structlog

from todo_common.settings import Settings


@dataclass(frozen=True)
class LogOutput:
    """How `configure_logging` set this process up: lines at `level` and above, in `format`, go
    to `stream`, each carrying `process` (and the pid)."""

    format: Literal["console", "json"]
    level: int
    stream: TextIO
    process: str


_output: LogOutput | None = None


def log_output() -> LogOutput | None:
    """This process's log set-up, or None before `configure_logging` ran."""
    return _output


def _renderer(log_format: str) -> Any:
    if log_format == "console":
        return structlog.dev.ConsoleRenderer()
    return structlog.processors.JSONRenderer()


def configure_logging(settings: Settings, process: str) -> None:
    """Route structlog and stdlib logging to stderr through one renderer."""
    global _output
    level = logging.getLevelNamesMapping()[settings.log_level.upper()]
    log_format = settings.log_format or ("console" if sys.stderr.isatty() else "json")
    shared: list[Any] = [
        structlog.contextvars.merge_contextvars,
        structlog.stdlib.add_log_level,
        structlog.stdlib.add_logger_name,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        structlog.processors.StackInfoRenderer(),
        structlog.processors.format_exc_info,
        _add_process(process),
    ]
    structlog.configure(
        processors=[
            structlog.stdlib.filter_by_level,
            *shared,
            structlog.stdlib.ProcessorFormatter.wrap_for_formatter,
        ],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        cache_logger_on_first_use=True,
    )
    formatter = structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=shared,
        processors=[
            structlog.stdlib.ProcessorFormatter.remove_processors_meta,
            _renderer(log_format),
        ],
    )
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(formatter)
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    for name in ("hypercorn.error", "hypercorn.access", "quart.app", "quart.serving"):
        named = logging.getLogger(name)
        named.handlers[:] = []
        named.propagate = True
    _output = LogOutput(log_format, level, sys.stderr, process)


def _add_process(process: str) -> Any:
    def processor(_logger: Any, _name: str, event: dict[str, Any]) -> dict[str, Any]:
        event.setdefault("process", process)
        event.setdefault("pid", os.getpid())
        return event

    return processor
