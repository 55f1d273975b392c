"""The one Celery app factory: the API, the worker and the scheduler all build their app here, so
they agree on broker, serializer, queues, task names and delivery guarantees.

Tasks are referred to by name (`FLUSH_HIT_COUNTS`, `CLEANUP`); only the worker defines them, and
the scheduler and the API send them with `send_task`, importing no worker code.

Delivery: `task_acks_late` + `task_reject_on_worker_lost` mean a task whose worker dies is
delivered again, which is safe because every task is idempotent. A task's work is cancelled inside
its event loop after `TASK_DEADLINE` seconds (its transaction rolls back); a child still busy at
`TASK_TIME_LIMIT` is killed and replaced. Both are well inside the broker's visibility timeout, so
a task that is merely slow is never handed to a second worker while the first still runs it.
(Celery's soft time limit is not used: its exception, raised from a signal handler, would tear
through the event loop and leave the task's coroutine half-run.)
"""

from __future__ import annotations

import socket
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from celery import Celery
from celery.signals import after_task_publish, setup_logging
from prometheus_client import Counter

from todo_common.broker import FILESYSTEM_TRANSPORT
from todo_common.settings import Settings

QUEUE = "todo"
FLUSH_HIT_COUNTS = "todo.flush_hit_counts"
CLEANUP = "todo.cleanup"
TASK_ROUTES = {FLUSH_HIT_COUNTS: {"queue": QUEUE}, CLEANUP: {"queue": QUEUE}}

TASK_DEADLINE = 240
TASK_TIME_LIMIT = 300
VISIBILITY_TIMEOUT = 900
# The message header that carries the X-Request-ID of the request that caused a task.
REQUEST_ID_HEADER = "request_id"

TASKS_SENT = Counter(
    "celery_task_sent_total",
    "Tasks sent to the broker by this process.",
    ["name", "hostname", "queue_name"],
)


def broker_folders(settings: Settings) -> dict[str, Path]:
    """The folders of the filesystem broker (used when no Redis is configured)."""
    root = settings.state_dir / "broker"
    return {"queue": root / "queue", "processed": root / "processed", "control": root / "control"}


def _transport_options(settings: Settings) -> dict[str, Any]:
    if settings.broker.startswith("filesystem://"):
        folders = broker_folders(settings)
        for folder in folders.values():
            folder.mkdir(parents=True, exist_ok=True)
        return {
            "data_folder_in": str(folders["queue"]),
            "data_folder_out": str(folders["queue"]),
            "processed_folder": str(folders["processed"]),
            "control_folder": str(folders["control"]),
            "store_processed": False,
            # The folder is polled; 1 s (the default) also slows the worker's shutdown.
            "polling_interval": 0.2,
        }
    # Redis: our key prefix keeps several deployments (and test runs) apart on one server.
    return {
        "visibility_timeout": VISIBILITY_TIMEOUT,
        "global_keyprefix": settings.redis_key_prefix,
        "socket_timeout": 5,
        "socket_connect_timeout": 5,
    }


def create_celery(settings: Settings, main: str = "todo") -> Celery:
    app = Celery(main, set_as_current=False)
    embedded = settings.broker.startswith("filesystem://")
    app.conf.update(
        broker_url=settings.broker,
        # The embedded broker's transport lets an idle worker stop at once (todo_common.broker).
        broker_transport=FILESYSTEM_TRANSPORT if embedded else None,
        broker_transport_options=_transport_options(settings),
        broker_connection_retry_on_startup=True,
        broker_connection_max_retries=None,
        task_serializer="json",
        accept_content=["json"],
        result_serializer="json",
        task_ignore_result=True,
        result_backend=None,
        task_default_queue=QUEUE,
        task_routes=TASK_ROUTES,
        task_acks_late=True,
        task_reject_on_worker_lost=True,
        task_time_limit=TASK_TIME_LIMIT,
        worker_prefetch_multiplier=1,
        worker_cancel_long_running_tasks_on_connection_loss=True,
        worker_hijack_root_logger=False,
        worker_redirect_stdouts=False,
        worker_send_task_events=False,
        # How long the worker's timer thread may sleep; its shutdown waits that long (default 1 s).
        worker_timer_precision=0.1,
        enable_utc=True,
        timezone="UTC",
        beat_schedule_filename=str(settings.state_dir / "beat-schedule"),
    )
    return app


@after_task_publish.connect(dispatch_uid="todo.count_sent_tasks")
def _count_sent(sender: str | None = None, routing_key: str | None = None, **_: Any) -> None:
    TASKS_SENT.labels(sender or "unknown", socket.gethostname(), routing_key or QUEUE).inc()


@setup_logging.connect(dispatch_uid="todo.keep_our_logging")
def _keep_our_logging(**_: Any) -> None:
    """A receiver here stops Celery from replacing the logging `todo_common.logs` set up."""


def broker_unreachable(settings: Settings) -> str | None:
    """'broker unreachable' when a network broker does not accept a connection, else None."""
    url = urlsplit(settings.broker)
    if url.scheme not in ("redis", "rediss", "amqp", "amqps") or not url.hostname:
        return None
    default_port = 5672 if url.scheme.startswith("amqp") else 6379
    try:
        with socket.create_connection((url.hostname, url.port or default_port), timeout=1):
            return None
    except OSError:
        return "broker unreachable"
