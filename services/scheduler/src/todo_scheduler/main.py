"""`todo-scheduler`: Celery beat sending the project's periodic tasks. Run exactly one.

Beat keeps its state (when each entry last ran) in TODO_STATE_DIR, which must be writable. Metrics
and a liveness `/healthz` are served on TODO_METRICS_PORT (default 9102).
"""

from __future__ import annotations

import signal
from collections.abc import Sequence

from todo_common.logs import configure_logging
from todo_common.metrics import prepare_multiprocess_dir
from todo_common.settings import load_settings

DEFAULT_METRICS_PORT = 9102
# Beat wakes at least this often, so its heartbeat (and tick metric) stays fresh between tasks.
MAX_SLEEP_SECONDS = 5.0


def main(argv: Sequence[str] | None = None) -> None:
    settings = load_settings()  # a bad value exits here with one line
    signal.signal(signal.SIGTERM, exit_before_start)
    prepare_multiprocess_dir("scheduler")  # before prometheus_client is imported anywhere
    configure_logging(settings, "scheduler")

    from todo_common.celery_app import broker_unreachable, create_celery
    from todo_common.metrics import start_metrics_server
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
    port = settings.metrics_port or DEFAULT_METRICS_PORT
    try:
        start_metrics_server(port, HEARTBEAT)
    except OSError as error:
        raise SystemExit(
            f"todo-scheduler: cannot serve metrics on port {port}: {error.strerror or error}"
        ) from None
    beat = app.Beat(
        scheduler=ObservedScheduler,
        max_interval=min(MAX_SLEEP_SECONDS, settings.flush_interval),
        loglevel=settings.log_level.upper(),
        redirect_stdouts=False,
        quiet=True,
    )
    beat.run()


def exit_before_start(_signum: int, _frame: object) -> None:
    """SIGTERM before Celery installs its own handler: nothing runs yet, so just exit cleanly."""
    raise SystemExit(0)
