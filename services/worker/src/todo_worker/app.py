"""The worker's Celery app: the shared factory's app plus the tasks and per-process resources."""

from __future__ import annotations

from typing import Any

from celery import Celery
from celery.signals import worker_process_init, worker_process_shutdown, worker_shutdown

from todo_common.celery_app import create_celery
from todo_common.metrics import Heartbeat
from todo_common.settings import Settings
from todo_worker.observe import install_heartbeat
from todo_worker.runtime import close_runtime, open_runtime
from todo_worker.tasks import register_tasks


def create_worker_app(settings: Settings, heartbeat: Heartbeat) -> Celery:
    app = create_celery(settings, main="todo-worker")
    register_tasks(app, settings)
    install_heartbeat(app, heartbeat)

    def open_for_child(**_: Any) -> None:
        open_runtime(settings)

    def close_for_process(**_: Any) -> None:
        close_runtime()

    worker_process_init.connect(open_for_child, weak=False)
    worker_process_shutdown.connect(close_for_process, weak=False)
    worker_shutdown.connect(close_for_process, weak=False)  # the solo pool runs tasks here
    return app
