"""Hit counts reach the database once and only once, through a real worker."""

from __future__ import annotations

import signal
import subprocess
import time
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest
import redis

from tests.support.servers import BIN, clean_env, free_port, start_api, wait_until
from tests.support.stack import Stack, new_todo, stats, view
from todo_common.celery_app import CLEANUP, FLUSH_HIT_COUNTS


def test_views_are_flushed_exactly_once(stack: Stack) -> None:
    worker = stack.worker()
    with stack.user_client() as client:
        first, second = new_todo(client), new_todo(client)
        view(client, first, 7)
        view(client, second, 3)
        assert stats(client)["hits"] == 0  # nothing flushed yet

        stack.flush(worker)
        assert stats(client) == {
            "todos": 2,
            "hits": 10,
            "most_viewed": [{"url": first, "hits": 7}, {"url": second, "hits": 3}],
        }
        stack.flush(worker)  # nothing new to move
        assert stats(client)["hits"] == 10

        view(client, second, 5)
        stack.flush(worker)
        assert stats(client)["most_viewed"] == [
            {"url": second, "hits": 8},
            {"url": first, "hits": 7},
        ]


def test_failed_and_foreign_gets_count_nothing(stack: Stack) -> None:
    worker = stack.worker()
    with stack.user_client() as owner, stack.user_client() as stranger:
        url = new_todo(owner)
        view(owner, url, 2)
        assert stranger.get(url).status_code == 404
        assert owner.get(url.rsplit("/", 1)[0] + "/999999999").status_code == 404
        assert owner.head(url).status_code == 200  # HEAD is not a view
        stack.flush(worker)
        assert stats(owner)["hits"] == 2
        assert stats(stranger) == {"todos": 0, "hits": 0, "most_viewed": []}


def _killed_mid_flush(stack: Stack, stage: str) -> None:
    with stack.user_client() as client:
        url = new_todo(client)
        view(client, url, 11)
        paused = stack.worker(TODO_TEST_PAUSE_FLUSH_AT=stage, TODO_TEST_PAUSE_SECONDS="60")
        stack.send()
        assert wait_until(lambda: "flush paused for a test" in paused.log(), 20), paused.log()
        paused.kill()  # SIGKILL, main process and pool child alike

        view(client, url, 4)  # hits keep arriving while no worker runs
        worker = stack.worker()
        stack.flush(worker)
        assert stats(client)["hits"] == 15
        stack.flush(worker)
        assert stats(client)["hits"] == 15


def test_kill_after_claiming_loses_nothing(stack: Stack) -> None:
    _killed_mid_flush(stack, "claimed")


def test_kill_after_applying_counts_nothing_twice(stack: Stack) -> None:
    _killed_mid_flush(stack, "applied")


def test_sigterm_lets_the_running_flush_finish(stack: Stack) -> None:
    with stack.user_client() as client:
        url = new_todo(client)
        view(client, url, 6)
        worker = stack.worker(TODO_TEST_PAUSE_FLUSH_AT="claimed", TODO_TEST_PAUSE_SECONDS="3")
        stack.send()
        assert wait_until(lambda: "flush paused for a test" in worker.log(), 20), worker.log()
        assert worker.stop(signal.SIGTERM, timeout=30) == 0, worker.log()
        assert stats(client)["hits"] == 6
    assert any(
        record.get("event") == "hit counts flushed" and record.get("hits") == 6
        for record in worker.records()
    ), worker.log()


def test_an_unreachable_database_is_retried_with_a_warning_not_a_traceback(stack: Stack) -> None:
    with stack.user_client() as client:
        url = new_todo(client)
        view(client, url, 3)
        refused = f"postgresql+asyncpg://postgres@127.0.0.1:{free_port()}/none"
        broken = stack.worker(TODO_DATABASE_URL=refused)
        stack.send()

        def retried() -> bool:
            return broken.metric("celery_task_retried_total", name=FLUSH_HIT_COUNTS) >= 1

        assert wait_until(retried, 20), broken.log()
        assert any(
            record.get("event") == "database unavailable; task retried later"
            and "ConnectionRefusedError" in str(record.get("error"))
            for record in broken.records()
        ), broken.log()
        assert "Traceback" not in broken.log()
        assert broken.metric("celery_task_failed_total") == 0
        broken.kill()

        stack.flush(stack.worker())  # applies the batch the broken worker claimed
        assert stats(client)["hits"] == 3


def test_metrics_count_successes_and_failures(stack: Stack) -> None:
    worker = stack.worker()
    assert worker.metric("celery_worker_up") == 1
    assert worker.metric("celery_task_failed_total") == 0
    stack.flush(worker)
    stack.flush(worker)
    assert worker.metric("celery_task_succeeded_total", name=FLUSH_HIT_COUNTS) == 2
    assert worker.metric("celery_task_received_total", name=FLUSH_HIT_COUNTS) == 2
    # task_postrun (which times the task) comes just after task_success.
    assert wait_until(
        lambda: worker.metric("celery_task_runtime_seconds_count", name=FLUSH_HIT_COUNTS) == 2, 10
    )

    stack.send(CLEANUP)
    assert wait_until(lambda: worker.metric("celery_task_succeeded_total", name=CLEANUP) == 1, 20)

    stack.send(args=["unexpected"])  # the task takes no arguments: it fails
    assert wait_until(lambda: worker.metric("celery_task_failed_total") == 1, 20), worker.log()
    assert worker.metric("celery_task_failed_total", exception="TypeError") == 1
    assert worker.metric("celery_task_succeeded_total", name=FLUSH_HIT_COUNTS) == 2


@pytest.mark.parametrize("rate_limits", [False, True], ids=["unlimited", "limited"])
def test_a_task_logs_the_request_id_that_caused_it(stack: Stack, rate_limits: bool) -> None:
    # With a threshold of 1, the first view waiting asks for an early flush (with rate limits
    # on, the limiter's script is the one that counts the view and decides).
    limits = {"TODO_USE_RATE_LIMITS": "true", "TODO_RATE_LIMIT": "1000/60s"} if rate_limits else {}
    stack.restart_api(TODO_HITS_FLUSH_THRESHOLD="1", **limits)
    worker = stack.worker()
    with stack.user_client() as client:
        url = new_todo(client)
        response = client.get(url, headers={"X-Request-ID": "req-flush-0001"})
        assert response.status_code == 200

        def flushed_with_request_id() -> bool:
            return any(
                record.get("event") == "hit counts flushed"
                and record.get("request_id") == "req-flush-0001"
                and record.get("hits") == 1
                for record in worker.records()
            )

        assert wait_until(flushed_with_request_id, 20), worker.log()
        assert stats(client)["hits"] == 1


def test_rate_limited_views_are_flushed_exactly(stack: Stack) -> None:
    """With rate limits: each successful GET counts once; 404s and 429s never count."""
    stack.restart_api(TODO_USE_RATE_LIMITS="true", TODO_RATE_LIMIT="12/60s")
    worker = stack.worker()
    with stack.user_client() as owner, stack.user_client() as stranger:
        url = new_todo(owner)  # request 1 of the owner's 12
        view(owner, url, 8)  # 2-9
        assert stranger.get(url).status_code == 404  # not a view
        assert owner.get(url.rsplit("/", 1)[0] + "/987654321").status_code == 404  # 10
        statuses = [owner.get(url).status_code for _ in range(4)]  # 11, 12, then over
        assert statuses == [200, 200, 429, 429]
        stack.flush(worker)
        assert stats(stranger) == {"todos": 0, "hits": 0, "most_viewed": []}
    # The owner's own /stats would be rate limited now: read it as a fresh API would.
    stack.restart_api()
    with stack.api.client(auth=_owner_auth(owner)) as client:
        assert stats(client)["hits"] == 10


def _owner_auth(client: httpx.Client) -> httpx.Auth:
    assert client.auth is not None
    return client.auth


def test_prefork_children_are_summed_and_run_concurrently(stack: Stack) -> None:
    worker = stack.worker(
        "--concurrency", "2", TODO_TEST_PAUSE_FLUSH_AT="claimed", TODO_TEST_PAUSE_SECONDS="2"
    )
    with stack.user_client() as client:
        url = new_todo(client)
        view(client, url, 3)
        stack.send()  # one child claims and pauses
        assert wait_until(lambda: "flush paused for a test" in worker.log(), 20), worker.log()
        view(client, url, 4)
        stack.send()  # the other child takes this one meanwhile
        assert wait_until(
            lambda: worker.metric("celery_task_succeeded_total", name=FLUSH_HIT_COUNTS) == 2, 30
        ), worker.log()
        assert stats(client)["hits"] == 7
    pids = {
        record["pid"] for record in worker.records() if record.get("event") == "hit counts flushed"
    }
    assert len(pids) == 2  # two children, one metrics endpoint


def test_solo_pool_works_and_other_pools_are_refused(stack: Stack) -> None:
    worker = stack.worker("--pool", "solo")
    with stack.user_client() as client:
        url = new_todo(client)
        view(client, url, 2)
        stack.flush(worker)
        assert stats(client)["hits"] == 2
    assert worker.stop(signal.SIGTERM) == 0, worker.log()

    refused = subprocess.run(
        [str(BIN / "todo-worker"), "--pool", "threads"],
        env=clean_env(**stack.env),
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert refused.returncode != 0
    assert refused.stderr.strip().splitlines() == [
        "todo-worker: --pool threads is not supported (use prefork or solo)"
    ]


def test_a_burst_at_once_on_two_api_workers_counts_exactly(stack: Stack) -> None:
    """N successful GETs sent at once, spread over two hypercorn workers, are N hits after a
    flush; and nothing but positive counts is ever written to Redis."""
    stack.api.stop()
    stack.api = start_api(stack.env, stack.folder, workers=2)
    worker = stack.worker()
    user = stack.api.add_user()
    with stack.api.client(auth=user) as client:
        urls = [new_todo(client) for _ in range(3)]
    views = 90

    def get(i: int) -> int:
        with stack.api.client(auth=user) as http:
            return http.get(urls[i % 3]).status_code

    with ThreadPoolExecutor(max_workers=45) as pool:
        statuses = list(pool.map(get, range(views)))
    assert statuses == [200] * views
    pids = {record.get("pid") for record in stack.api.records() if record.get("event") == "request"}
    assert len(pids) == 2, "both API workers served the burst"

    time.sleep(0.5)  # each worker sends its buffer within 0.1 s
    waiting = redis.Redis.from_url(stack.env["TODO_REDIS_URL"], decode_responses=True).hgetall(
        f"{stack.env['TODO_REDIS_KEY_PREFIX']}hits:pending"
    )
    assert sum(int(count) for count in waiting.values()) == views
    assert all(int(count) > 0 for count in waiting.values()), waiting

    stack.flush(worker)
    with stack.api.client(auth=user) as client:
        assert stats(client)["hits"] == views
