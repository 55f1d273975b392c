"""The tasks' policy for a database that cannot serve, run eagerly in-process (Celery's
`apply()` runs the retries at once): a warning per try, then an expected failure."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest
import redis
from structlog.testing import capture_logs

from tests.support.servers import free_port
from todo_common.celery_app import CLEANUP, FLUSH_HIT_COUNTS, create_celery
from todo_common.exceptions import DatabaseUnavailable
from todo_common.hits import HitKeys, hit_field
from todo_common.settings import Settings
from todo_worker.runtime import close_runtime
from todo_worker.tasks import DATABASE_RETRIES, register_tasks


@pytest.fixture
def refused_settings(redis_url: str) -> Iterator[Settings]:
    """Settings whose database refuses connections, with hits waiting in Redis."""
    prefix = f"todo-test-{uuid.uuid4().hex[:8]}:"
    client = redis.Redis.from_url(redis_url)
    client.hincrby(HitKeys(prefix).pending, hit_field(1, 1), 2)
    yield Settings(
        database_url=f"postgresql+asyncpg://postgres@127.0.0.1:{free_port()}/none",
        redis_url=redis_url,
        redis_key_prefix=prefix,
    )
    close_runtime()
    keys = list(client.scan_iter(f"{prefix}*"))
    if keys:
        client.delete(*keys)
    client.close()


def test_retries_then_fails_as_expected(refused_settings: Settings) -> None:
    # One app for both tasks: Celery keeps the first callable registered under a task name.
    app = create_celery(refused_settings, main="todo-test")
    register_tasks(app, refused_settings)
    for task in (FLUSH_HIT_COUNTS, CLEANUP):
        with capture_logs() as logs:
            result = app.tasks[task].apply()

        assert result.state == "FAILURE", task
        assert isinstance(result.result, DatabaseUnavailable), task
        assert app.tasks[task].throws == (DatabaseUnavailable,)  # logged without a traceback
        warnings = [log["event"] for log in logs if log["log_level"] == "warning"]
        assert warnings == ["database unavailable; task retried later"] * DATABASE_RETRIES + [
            "database unavailable; out of retries, the next scheduled run does the work"
        ], task
