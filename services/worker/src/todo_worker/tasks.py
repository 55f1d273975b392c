"""The worker's tasks. Each is idempotent: a second run, or a run after a killed one, changes
nothing more than one run would.

A database that cannot serve now (`DatabaseUnavailable`, raised where the tasks use it) is no
bug: the task logs one warning and is retried a few times after a pause; the hits wait safely
in Redis meanwhile. When the retries run out it fails as an expected error (Celery's `throws`:
logged without a traceback, still counted in `celery_task_failed_total`), and the next
scheduled run picks up the work.
"""

from __future__ import annotations

from dataclasses import asdict
from typing import NoReturn

import structlog
from celery import Celery, Task

from todo_common.celery_app import CLEANUP, FLUSH_HIT_COUNTS, TASK_DEADLINE
from todo_common.exceptions import DatabaseUnavailable
from todo_common.settings import Settings
from todo_worker.flush import HitFlusher
from todo_worker.runtime import open_runtime

log = structlog.get_logger(__name__)

# A database restart takes seconds; three tries 10 s apart fit inside one flush interval.
DATABASE_RETRY_SECONDS = 10
DATABASE_RETRIES = 3


def _retry_later(task: Task, error: DatabaseUnavailable) -> NoReturn:
    """Retry `task` after a pause (Celery's `Retry`), or, out of retries, raise `error` itself."""
    if task.request.retries < DATABASE_RETRIES:
        log.warning(
            "database unavailable; task retried later",
            task=task.name,
            error=str(error),
            retry_in=DATABASE_RETRY_SECONDS,
            retries_left=DATABASE_RETRIES - task.request.retries,
        )
    else:
        log.warning(
            "database unavailable; out of retries, the next scheduled run does the work",
            task=task.name,
            error=str(error),
        )
    raise task.retry(exc=error, countdown=DATABASE_RETRY_SECONDS, max_retries=DATABASE_RETRIES)


def register_tasks(app: Celery, settings: Settings) -> None:
    def flusher() -> HitFlusher | None:
        runtime = open_runtime(settings)
        if runtime.redis is None:
            return None
        return HitFlusher(runtime.redis, runtime.sessions, settings)

    @app.task(name=FLUSH_HIT_COUNTS, bind=True, throws=(DatabaseUnavailable,))
    def flush_hit_counts(self: Task) -> dict[str, int]:
        """Move the hit counts waiting in Redis into the database."""
        hits = flusher()
        if hits is None:
            log.info("hit counting is off (no TODO_REDIS_URL): nothing to flush")
            return {}
        try:
            report = asdict(open_runtime(settings).run(hits.flush(), TASK_DEADLINE))
        except DatabaseUnavailable as error:
            _retry_later(self, error)
        log.info("hit counts flushed", **report)
        return report

    @app.task(name=CLEANUP, bind=True, throws=(DatabaseUnavailable,))
    def cleanup(self: Task) -> dict[str, int]:
        """Daily: forget the ids of hit batches applied long ago."""
        hits = flusher()
        try:
            forgotten = (
                open_runtime(settings).run(hits.forget_old_batches(), TASK_DEADLINE) if hits else 0
            )
        except DatabaseUnavailable as error:
            _retry_later(self, error)
        log.info("cleanup done", forgotten_batch_ids=forgotten)
        return {"forgotten_batch_ids": forgotten}
