"""Celery beat's scheduler with metrics: ticks and sends are counted, and each tick beats the
heartbeat behind the liveness probe."""

from __future__ import annotations

import time
from typing import Any

from celery.beat import PersistentScheduler, ScheduleEntry
from prometheus_client import Counter, Gauge

from todo_common.metrics import Heartbeat

BEAT_SENT = Counter("todo_beat_sent_total", "Tasks the scheduler sent, by task name.", ["task"])
LAST_TICK = Gauge(
    "todo_beat_last_tick_timestamp_seconds",
    "When the scheduler last checked its schedule (UTC epoch seconds).",
    multiprocess_mode="max",
)
TICKS = Counter("todo_beat_ticks_total", "Times the scheduler checked its schedule.")

HEARTBEAT = Heartbeat(max_age=60.0)  # main() adds the broker-down excuse
# Beat's heap keeps whole seconds, so just before an entry is due its tick returns ~0 again and
# again; a floor on the sleep keeps that from spinning a core.
MIN_SLEEP_SECONDS = 0.1


class ObservedScheduler(PersistentScheduler):  # type: ignore[misc]
    def tick(self, *args: Any, **kwargs: Any) -> float:
        interval: float = super().tick(*args, **kwargs)
        LAST_TICK.set(time.time())
        TICKS.inc()
        HEARTBEAT.beat()
        return max(interval, MIN_SLEEP_SECONDS)

    def apply_async(self, entry: ScheduleEntry, *args: Any, **kwargs: Any) -> Any:
        result = super().apply_async(entry, *args, **kwargs)
        BEAT_SENT.labels(entry.task).inc()
        return result
