"""What the worker tells the outside: celery-exporter's metrics, task-scoped logs, a heartbeat.

Metric names and labels follow celery-exporter, so its dashboards and alerts work unchanged. They
are counted in the process where the event happens (received in the main process, the rest in the
child that runs the task) and summed by prometheus-client's multiprocess mode.

Every log line of a task carries its name, id and, when a request caused it, that request's id.
"""

from __future__ import annotations

import socket
import time
from typing import Any, ClassVar

import structlog
from celery import Celery, bootsteps
from celery.signals import (
    task_failure,
    task_postrun,
    task_prerun,
    task_received,
    task_retry,
    task_success,
    worker_ready,
    worker_shutdown,
)
from prometheus_client import Counter, Gauge, Histogram

from todo_common.celery_app import QUEUE, REQUEST_ID_HEADER, TASK_TIME_LIMIT
from todo_common.metrics import Heartbeat

HOSTNAME = socket.gethostname()
LABELS = ["name", "hostname", "queue_name"]
HEARTBEAT_SECONDS = 5.0

RECEIVED = Counter("celery_task_received_total", "Tasks received by the worker.", LABELS)
SUCCEEDED = Counter("celery_task_succeeded_total", "Tasks that succeeded.", LABELS)
FAILED = Counter("celery_task_failed_total", "Tasks that failed.", [*LABELS, "exception"])
RETRIED = Counter("celery_task_retried_total", "Tasks retried.", LABELS)
RUNTIME = Histogram(
    "celery_task_runtime_seconds",
    "Time a task took to run.",
    LABELS,
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300),
)
WORKER_UP = Gauge(
    "celery_worker_up", "1 while the worker is running.", ["hostname"], multiprocess_mode="max"
)

_started: dict[str, float] = {}


def _queue(task: Any) -> str:
    delivery = getattr(task.request, "delivery_info", None) or {}
    return str(delivery.get("routing_key") or QUEUE)


def _labels(task: Any) -> tuple[str, str, str]:
    return task.name, HOSTNAME, _queue(task)


@task_received.connect
def _received(request: Any = None, **_: Any) -> None:
    queue = (request.delivery_info or {}).get("routing_key") or QUEUE
    RECEIVED.labels(request.name, HOSTNAME, queue).inc()


@task_prerun.connect
def _prerun(task_id: str = "", task: Any = None, **_: Any) -> None:
    _started[task_id] = time.perf_counter()
    structlog.contextvars.clear_contextvars()
    context = {"task": task.name, "task_id": task_id}
    request_id = getattr(task.request, REQUEST_ID_HEADER, None)
    if request_id:
        context["request_id"] = request_id
    structlog.contextvars.bind_contextvars(**context)


@task_postrun.connect
def _postrun(task_id: str = "", task: Any = None, **_: Any) -> None:
    started = _started.pop(task_id, None)
    if started is not None:
        RUNTIME.labels(*_labels(task)).observe(time.perf_counter() - started)
    structlog.contextvars.clear_contextvars()


@task_success.connect
def _succeeded(sender: Any = None, **_: Any) -> None:
    SUCCEEDED.labels(*_labels(sender)).inc()


@task_failure.connect
def _failed(sender: Any = None, exception: BaseException | None = None, **_: Any) -> None:
    FAILED.labels(*_labels(sender), type(exception).__name__).inc()


@task_retry.connect
def _retried(sender: Any = None, **_: Any) -> None:
    RETRIED.labels(*_labels(sender)).inc()


@worker_ready.connect
def _up(**_: Any) -> None:
    WORKER_UP.labels(HOSTNAME).set(1)


@worker_shutdown.connect
def _down(**_: Any) -> None:
    WORKER_UP.labels(HOSTNAME).set(0)


def install_heartbeat(app: Celery, heartbeat: Heartbeat) -> None:
    """Beat `heartbeat` from the worker's own timer: it stops when the worker's loop wedges.
    A task run in this process (the solo pool) blocks that loop, so it counts as busy."""

    def busy(**_: Any) -> None:
        heartbeat.busy_for(TASK_TIME_LIMIT + HEARTBEAT_SECONDS * 2)

    def idle(**_: Any) -> None:
        heartbeat.idle()

    task_prerun.connect(busy, weak=False)
    task_postrun.connect(idle, weak=False)

    class HeartbeatStep(bootsteps.StartStopStep):  # type: ignore[misc]
        requires: ClassVar = {"celery.worker.components:Timer"}

        def start(self, worker: Any) -> None:
            heartbeat.beat()
            self.tref = worker.timer.call_repeatedly(HEARTBEAT_SECONDS, heartbeat.beat)

        def stop(self, worker: Any) -> None:
            tref = getattr(self, "tref", None)
            if tref is not None:
                tref.cancel()

    app.steps["worker"].add(HeartbeatStep)
