"""The beat schedule: which task runs when, by name (the scheduler imports no worker code)."""

from __future__ import annotations

from typing import Any

from celery.schedules import crontab

from todo_common.celery_app import CLEANUP, FLUSH_HIT_COUNTS
from todo_common.settings import Settings

# A flush that waited longer than this in the queue is dropped: the next one does its work.
MIN_FLUSH_EXPIRY = 60.0


def beat_schedule(settings: Settings) -> dict[str, dict[str, Any]]:
    return {
        "flush-hit-counts": {
            "task": FLUSH_HIT_COUNTS,
            "schedule": settings.flush_interval,
            "options": {"expires": max(settings.flush_interval, MIN_FLUSH_EXPIRY)},
        },
        "cleanup": {
            "task": CLEANUP,
            "schedule": crontab(hour="3", minute="17"),
        },
    }
