"""What waits for the worker, read at scrape time: `todo_queue_length`, the tasks waiting in the
broker queue (celery-exporter's `celery_queue_length`), for alerts and for scaling workers on the
queue (the chart's KEDA option); and `todo_hit_batches_open`, the hit-count batches a flush claimed
and has not finished (one lasts a flush's few seconds; one still open flushes later is stuck).

The scheduler exports them: it runs as exactly one replica, so there is one series each, and it
already talks to the broker. Nothing is cached: on Redis the lengths of the queue's lists (kombu
keeps one list per priority step, each under our key prefix) and of the open-batches set, on the
embedded broker the message files in its queue folder (no Redis: no hit counting either). When
Redis does not answer, the scrape still succeeds, without the samples: a missing series is what
alerts on `absent()` look for, and a made-up 0 would tell an autoscaler to scale in.
"""

from __future__ import annotations

from collections.abc import Iterator

import redis
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from todo_common.celery_app import QUEUE, broker_folders
from todo_common.hits import HitKeys
from todo_common.settings import Settings

# kombu's Redis transport: a message of priority p waits in QUEUE + SEPARATOR + p (0: QUEUE alone).
PRIORITY_SEPARATOR = "\x06\x16"
PRIORITY_STEPS = (0, 3, 6, 9)
BROKER_TIMEOUT_SECONDS = 1.0  # a scrape must answer within Prometheus's scrape timeout


def queue_keys(prefix: str, queue: str = QUEUE) -> list[str]:
    """The Redis lists that hold `queue`'s waiting messages."""
    return [prefix + queue] + [
        f"{prefix}{queue}{PRIORITY_SEPARATOR}{step}" for step in PRIORITY_STEPS if step
    ]


class QueueLengthCollector(Collector):
    """A prometheus-client collector that reads the queue's depth at every scrape."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.embedded = settings.broker.startswith("filesystem://")
        self.client = (
            None
            if self.embedded
            else redis.Redis.from_url(
                settings.broker,
                socket_timeout=BROKER_TIMEOUT_SECONDS,
                socket_connect_timeout=BROKER_TIMEOUT_SECONDS,
            )
        )

    def depth(self) -> int | None:
        """Messages waiting now; None when the broker cannot say."""
        if self.client is None:
            folder = broker_folders(self.settings)["queue"]
            try:
                return sum(1 for path in folder.iterdir() if path.suffix == ".msg")
            except OSError:
                return None
        pipeline = self.client.pipeline(transaction=False)
        for key in queue_keys(self.settings.redis_key_prefix):
            pipeline.llen(key)
        try:
            return sum(int(length) for length in pipeline.execute())
        except redis.RedisError:
            return None

    def open_batches(self) -> int | None:
        """Hit-count batches claimed by a flush and not yet finished; None without Redis."""
        if self.client is None:
            return None
        try:
            return int(self.client.scard(HitKeys(self.settings.redis_key_prefix).open_batches))
        except redis.RedisError:
            return None

    def collect(self) -> Iterator[GaugeMetricFamily]:
        family = GaugeMetricFamily(
            "todo_queue_length",
            "Tasks waiting in the broker queue, read at scrape time (absent: broker unreachable).",
            labels=["queue_name"],
        )
        depth = self.depth()
        if depth is not None:
            family.add_metric([QUEUE], depth)
        yield family
        batches = GaugeMetricFamily(
            "todo_hit_batches_open",
            "Hit-count batches claimed by a flush and not finished (absent: Redis unreachable).",
        )
        opened = self.open_batches()
        if opened is not None:
            batches.add_metric([], opened)
        yield batches
