"""The worker's tasks. Each is idempotent: a second run, or a run after a killed one, changes
nothing more than one run would."""

from __future__ import annotations

from dataclasses import asdict

import structlog
from celery import Celery

from todo_common.celery_app import CLEANUP, FLUSH_HIT_COUNTS, TASK_DEADLINE
from todo_common.settings import Settings
from todo_worker.flush import HitFlusher
from todo_worker.runtime import open_runtime

log = structlog.get_logger(__name__)


def register_tasks(app: Celery, settings: Settings) -> None:
    def flusher() -> HitFlusher | None:
        runtime = open_runtime(settings)
        if runtime.redis is None:
            return None
        return HitFlusher(runtime.redis, runtime.sessions, settings)

    @app.task(name=FLUSH_HIT_COUNTS)
    def flush_hit_counts() -> dict[str, int]:
        """Move the hit counts waiting in Redis into the database."""
        hits = flusher()
        if hits is None:
            log.info("hit counting is off (no TODO_REDIS_URL): nothing to flush")
            return {}
        report = asdict(open_runtime(settings).run(hits.flush(), TASK_DEADLINE))
        log.info("hit counts flushed", **report)
        return report

    @app.task(name=CLEANUP)
    def cleanup() -> dict[str, int]:
        """Daily: forget the ids of hit batches applied long ago."""
        hits = flusher()
        forgotten = (
            open_runtime(settings).run(hits.forget_old_batches(), TASK_DEADLINE) if hits else 0
        )
        log.info("cleanup done", forgotten_batch_ids=forgotten)
        return {"forgotten_batch_ids": forgotten}
