"""A real `todo-scheduler` drives the flushes: no manual trigger, no double counting."""

from __future__ import annotations

import signal
import subprocess
import sys
import time

from tests.support import local_http
from tests.support.servers import wait_until
from tests.support.stack import Stack, new_todo, stats, view
from todo_common.celery_app import FLUSH_HIT_COUNTS, QUEUE


def test_scheduled_flushes_move_hits_without_double_counting(stack: Stack) -> None:
    # Two workers of two children each race for the 1-second ticks' flushes while views arrive.
    workers = [stack.worker("--concurrency", "2") for _ in range(2)]
    scheduler = stack.scheduler(TODO_FLUSH_INTERVAL="1")
    with stack.user_client() as client:
        urls = [new_todo(client) for _ in range(3)]
        deadline = time.monotonic() + 4  # several ticks
        views = 0
        while time.monotonic() < deadline:
            for url in urls:
                view(client, url, 1)
                views += 1

        def all_flushed() -> bool:
            return stats(client)["hits"] == views

        assert wait_until(all_flushed, 20), [worker.log() for worker in workers]
        flushes = sum(
            worker.metric("celery_task_succeeded_total", name=FLUSH_HIT_COUNTS)
            for worker in workers
        )
        assert wait_until(
            lambda: (
                sum(
                    worker.metric("celery_task_succeeded_total", name=FLUSH_HIT_COUNTS)
                    for worker in workers
                )
                >= flushes + 2
            ),
            20,
        )  # more ticks, nothing new: nothing is added twice
        assert stats(client)["hits"] == views
    assert scheduler.metric("todo_beat_sent_total", task=FLUSH_HIT_COUNTS) >= 5


def test_scheduler_metrics_health_and_clean_exit(stack: Stack) -> None:
    scheduler = stack.scheduler(TODO_FLUSH_INTERVAL="1")
    assert wait_until(lambda: scheduler.metric("todo_beat_sent_total") >= 2, 20), scheduler.log()
    last_tick = scheduler.metric("todo_beat_last_tick_timestamp_seconds")
    assert time.time() - 10 < last_tick <= time.time() + 1
    sent = scheduler.metric("celery_task_sent_total", name=FLUSH_HIT_COUNTS)
    assert sent >= 2
    # No worker runs here: what beat sent waits in the queue, and the scheduler says so.
    assert scheduler.metric("todo_queue_length", queue_name=QUEUE) >= 2

    health = scheduler.metrics_url + "/healthz"

    response = local_http.get(health)
    assert response.status_code == 200
    assert response.json()["status"] == "ok"

    assert scheduler.stop(signal.SIGTERM, timeout=15) == 0, scheduler.log()
    state = stack.folder / "state"
    assert any(path.name.startswith("beat-schedule") for path in state.iterdir())


def test_scheduler_imports_no_worker_code() -> None:
    probe = (
        "import sys; from todo_scheduler import main, schedule, beat; "
        "print(sorted(m for m in sys.modules if m.startswith('todo_worker')))"
    )
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"
