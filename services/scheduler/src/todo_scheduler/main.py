"""`todo-scheduler`: Celery beat sending the project's periodic tasks. Run exactly one.

Beat keeps its state (when each entry last ran) in TODO_STATE_DIR, which must be writable. Metrics
and a liveness `/healthz` are served on TODO_METRICS_PORT (default 9102).
"""

from __future__ import annotations

import codecs
from collections.abc import Sequence

from todo_common.service import serve_metrics, start_service

DEFAULT_METRICS_PORT = 9102
# Beat wakes at least this often, so its heartbeat (and tick metric) stays fresh between tasks.
MAX_SLEEP_SECONDS = 5.0


def main(argv: Sequence[str] | None = None) -> None:
    settings = start_service("scheduler")

    from todo_common.celery_app import broker_unreachable, create_celery
    from todo_common.queue_depth import QueueLengthCollector
    from todo_scheduler.beat import HEARTBEAT, ObservedScheduler
    from todo_scheduler.schedule import beat_schedule

    try:
        settings.state_dir.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise SystemExit(
            f"todo-scheduler: TODO_STATE_DIR {settings.state_dir} is not writable: "
            f"{error.strerror or error}"
        ) from None
    HEARTBEAT.excuse = lambda: broker_unreachable(settings)  # sending waits for the broker
    app = create_celery(settings, main="todo-scheduler")
    app.conf.beat_schedule = beat_schedule(settings)
    # Built now, before /healthz answers: beat imports these lazily as it starts (the codec when
    # dbm.dumb creates its state file), and a SIGTERM that lands inside such an import makes
    # beat's handler fail on the half-imported module (exit 1).
    _ = app.amqp
    codecs.lookup("latin-1")
    # The one replica exports the queue's depth (todo_queue_length), read at each scrape.
    serve_metrics(
        "scheduler", settings, DEFAULT_METRICS_PORT, HEARTBEAT, [QueueLengthCollector(settings)]
    )
    beat = app.Beat(
        scheduler=ObservedScheduler,
        max_interval=min(MAX_SLEEP_SECONDS, settings.flush_interval),
        loglevel=settings.log_level.upper(),
        redirect_stdouts=False,
        quiet=True,
    )
    beat.run()
