"""Start-up shared by the services' entry points (`todo-api`, `todo-worker`, `todo-scheduler`).

`start_service()` runs first, before the server, Celery or prometheus_client is imported: it
reads the settings (a bad value ends the process with one line), makes a SIGTERM that arrives
before the service installs its own handler a clean exit, prepares the Prometheus multiprocess
folder, and sets up logging. The worker and the scheduler then call `serve_metrics()` to open
their metrics and liveness endpoint, which ends the process with one line if its port is taken.
"""

from __future__ import annotations

import signal
from collections.abc import Sequence
from typing import TYPE_CHECKING

from todo_common.logs import configure_logging
from todo_common.metrics import Heartbeat, prepare_multiprocess_dir, start_metrics_server
from todo_common.settings import Settings, load_settings

if TYPE_CHECKING:  # imported by the service once its metrics folder is set
    from prometheus_client.registry import Collector


def start_service(service: str) -> Settings:
    """Everything a service does before its first heavy import; returns its settings."""
    settings = load_settings()  # a bad value exits here with one line
    signal.signal(signal.SIGTERM, _exit_before_start)
    prepare_multiprocess_dir(service)  # before prometheus_client is imported anywhere
    configure_logging(settings, service)
    return settings


def serve_metrics(
    service: str,
    settings: Settings,
    default_port: int,
    heartbeat: Heartbeat,
    collectors: Sequence[Collector] = (),
) -> None:
    """Serve `/metrics` (with what `collectors` read at each scrape) and `/healthz` on
    TODO_METRICS_PORT (else `default_port`)."""
    port = settings.metrics_port or default_port
    try:
        start_metrics_server(port, heartbeat, collectors=collectors)
    except OSError as error:
        raise SystemExit(
            f"todo-{service}: cannot serve metrics on port {port}: {error.strerror or error}"
        ) from None


def _exit_before_start(_signum: int, _frame: object) -> None:
    """SIGTERM before the service installs its own handler: nothing runs yet, so exit cleanly."""
    raise SystemExit(0)
