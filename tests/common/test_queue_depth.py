"""`todo_queue_length` counts the tasks Celery really left waiting in the broker (sent with the
project's own Celery app, through kombu), on Redis under the key prefix and on the embedded broker,
and is absent, not 0, while Redis does not answer."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis
from prometheus_client import CollectorRegistry, generate_latest

from tests.support.servers import free_port
from todo_common.celery_app import FLUSH_HIT_COUNTS, QUEUE, create_celery
from todo_common.hits import CLAIM_SCRIPT, HitKeys, hit_field
from todo_common.queue_depth import QueueLengthCollector, queue_keys
from todo_common.settings import Settings


@pytest.fixture
def redis_settings(redis_url: str, tmp_path: Path) -> Iterator[Settings]:
    prefix = f"todo-test-{uuid.uuid4().hex[:8]}:"
    yield Settings(redis_url=redis_url, redis_key_prefix=prefix, state_dir=tmp_path)
    client = redis.Redis.from_url(redis_url)
    client.delete(*queue_keys(prefix))
    client.close()


def send(settings: Settings, count: int, **options: object) -> None:
    app = create_celery(settings)
    try:
        for _ in range(count):
            app.send_task(FLUSH_HIT_COUNTS, **options)
    finally:
        app.close()


def scraped(collector: QueueLengthCollector) -> str:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(collector)
    return generate_latest(registry).decode()


def test_counts_waiting_tasks_of_every_priority_under_the_prefix(redis_settings: Settings) -> None:
    collector = QueueLengthCollector(redis_settings)
    assert collector.depth() == 0
    send(redis_settings, 3)
    send(redis_settings, 2, priority=9)
    send(Settings(redis_url=redis_settings.broker, redis_key_prefix="todo-other:"), 1)
    try:
        assert collector.depth() == 5  # another deployment's queue is not ours
        assert f'todo_queue_length{{queue_name="{QUEUE}"}} 5.0' in scraped(collector)
    finally:
        other = redis.Redis.from_url(redis_settings.broker)
        other.delete(*queue_keys("todo-other:"))
        other.close()


def test_counts_the_embedded_brokers_messages(tmp_path: Path) -> None:
    settings = Settings(state_dir=tmp_path)
    assert settings.broker.startswith("filesystem://")
    send(settings, 4)
    assert QueueLengthCollector(settings).depth() == 4


def test_is_absent_while_redis_does_not_answer(tmp_path: Path) -> None:
    settings = Settings(redis_url=f"redis://127.0.0.1:{free_port()}/0", state_dir=tmp_path)
    text = scraped(QueueLengthCollector(settings))
    assert "# TYPE todo_queue_length gauge" in text
    assert "todo_queue_length{" not in text
    assert "# TYPE todo_hit_batches_open gauge" in text
    assert "\ntodo_hit_batches_open " not in text


def test_counts_the_hit_batches_a_flush_left_open(redis_settings: Settings) -> None:
    """A flush claims the pending hits as a batch and forgets it once applied: the gauge shows
    the batches in between (a worker killed after claiming leaves one)."""
    collector = QueueLengthCollector(redis_settings)
    keys = HitKeys(redis_settings.redis_key_prefix)
    client = redis.Redis.from_url(redis_settings.broker)
    try:
        assert collector.open_batches() == 0
        client.hincrby(keys.pending, hit_field(1, 1), 2)
        claimed = client.eval(
            CLAIM_SCRIPT, 4, keys.pending, keys.batch("b1"), keys.open_batches,
            keys.flush_requested, "b1",
        )  # fmt: skip
        assert claimed == 1
        assert "todo_hit_batches_open 1.0" in scraped(collector)
    finally:
        client.delete(keys.batch("b1"), keys.open_batches, keys.pending)
        client.close()
