"""`todo-worker [celery worker options]`: the Celery worker with the project's tasks.

Configured by the environment (TODO_*); any argument is passed to `celery worker`, for example
`--concurrency 4` or `--pool solo`. Metrics and a liveness `/healthz` are served on
TODO_METRICS_PORT (default 9101).
"""

from __future__ import annotations

import sys
from collections.abc import Sequence

from todo_common.metrics import Heartbeat
from todo_common.service import serve_metrics, start_service

DEFAULT_METRICS_PORT = 9101
# The worker's timer beats every 5 s; a minute of silence means its main loop is stuck (unless
# it is running a task in-process, with --pool solo, or the broker is down).
HEARTBEAT_MAX_AGE = 60.0
# Pools that run tasks on threads or greenlets would share one event loop between tasks.
SUPPORTED_POOLS = ("prefork", "solo")


def main(argv: Sequence[str] | None = None) -> None:
    settings = start_service("worker")

    from todo_common.celery_app import broker_unreachable
    from todo_worker.app import create_worker_app

    arguments = list(sys.argv[1:] if argv is None else argv)
    pool = _option(arguments, "--pool", "-P")
    if pool is not None and pool not in SUPPORTED_POOLS:
        raise SystemExit(f"todo-worker: --pool {pool} is not supported (use prefork or solo)")
    heartbeat = Heartbeat(HEARTBEAT_MAX_AGE, excuse=lambda: broker_unreachable(settings))
    app = create_worker_app(settings, heartbeat)
    serve_metrics("worker", settings, DEFAULT_METRICS_PORT, heartbeat)
    app.worker_main(
        [
            "--quiet",  # no banner: every line on stderr is a log record
            "worker",
            f"--loglevel={settings.log_level.upper()}",
            # Gossip and mingle serve cluster-wide remote control and events, which we do not use.
            "--without-gossip",
            "--without-mingle",
            *arguments,
        ]
    )


def _option(arguments: list[str], long: str, short: str) -> str | None:
    """The value of an option given as `--pool X`, `--pool=X`, `-P X` or `-PX`, if present."""
    for index, argument in enumerate(arguments):
        if argument in (long, short) and index + 1 < len(arguments):
            return arguments[index + 1]
        if argument.startswith(f"{long}="):
            return argument.split("=", 1)[1]
        if (
            argument.startswith(short)
            and len(argument) > len(short)
            and not argument.startswith("--")
        ):
            return argument[len(short) :]
    return None
