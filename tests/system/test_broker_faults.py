"""The broker (Redis) going away while the worker runs: the worker neither crashes nor exits,
its /healthz stays 200, it reconnects by itself when Redis returns, and the flushes that were
pending then complete, so no hit that reached Redis before the outage is lost.

How the outage is made: Redis here is both the broker and the store of hit counts, and a broker
that is expected not to lose queued tasks runs with persistence. So the throwaway Redis stops as a
persistent Redis does (`SHUTDOWN SAVE`: the data set is written to disk, the process exits, every
connection is dropped and new ones are refused) and starts again from that file. That is "the
broker is gone" as the worker sees it when Redis restarts, crashes after a save, or its node is
replaced, without pretending that a Redis without persistence keeps its data. A network that
silently drops packets is not simulated here (a hung Redis is, for the API, in
test_redis_faults.py). Hits counted while Redis is down are lost (the API fails open): that is
the documented limit.
"""

from __future__ import annotations

import shutil
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support import local_http
from tests.support.databases import DatabaseFactory
from tests.support.instances import RedisServer
from tests.support.servers import ServiceProcess, free_port, need_program, start_api, wait_until
from tests.support.stack import Stack, new_todo, stats, view
from todo_common.celery_app import FLUSH_HIT_COUNTS, broker_unreachable

pytestmark = pytest.mark.timeout(60)

OUTAGE_SECONDS = 5.0
PAUSE_SECONDS = 2  # the flush running when Redis goes stays paused this long after claiming


@pytest.fixture
def own_redis(tmp_path: Path) -> Iterator[RedisServer]:
    need_program("redis-server", shutil.which("redis-server"))
    server = RedisServer(free_port(), tmp_path / "redis")
    server.folder.mkdir()
    server.start()
    yield server
    server.stop()


@pytest.fixture
def own_stack(
    own_redis: RedisServer, postgres: str, databases: DatabaseFactory, tmp_path: Path
) -> Iterator[Stack]:
    """An API with hit counting and a place for workers, all on the throwaway Redis."""
    env = {
        "TODO_DATABASE_URL": databases.create("postgres"),
        "TODO_REDIS_URL": own_redis.url,
        "TODO_REDIS_KEY_PREFIX": f"todo-test-{uuid.uuid4().hex[:8]}:",
        "TODO_STATE_DIR": str(tmp_path / "state"),
    }
    stack = Stack(start_api(env, tmp_path), env, tmp_path)
    yield stack
    for service in stack.services:
        service.kill()
    stack.api.stop()


def succeeded(worker: ServiceProcess) -> float:
    return worker.metric("celery_task_succeeded_total", name=FLUSH_HIT_COUNTS)


def health(worker: ServiceProcess) -> dict[str, object]:
    response = local_http.get(f"{worker.metrics_url}/healthz", timeout=5)
    body: dict[str, object] = response.json()
    return {"code": response.status_code, **body}


def test_worker_reconnects_and_pending_flushes_complete(
    own_stack: Stack, own_redis: RedisServer
) -> None:
    worker = own_stack.worker(
        TODO_TEST_PAUSE_FLUSH_AT="claimed", TODO_TEST_PAUSE_SECONDS=str(PAUSE_SECONDS)
    )
    with own_stack.user_client() as client:
        url = new_todo(client)
        view(client, url, 7)
        own_stack.send()  # claims those 7 and pauses, holding the worker's one process
        assert wait_until(lambda: "flush paused for a test" in worker.log(), 20), worker.log()
        view(client, url, 5)  # waiting in Redis, claimed by no one yet
        own_stack.send()  # queued behind the paused flush: the pending flush

        own_redis.shutdown_keeping_data()  # the running flush loses Redis mid-way
        down = time.monotonic()
        during = [client.get(url).status_code for _ in range(3)]  # wait in the API's buffer
        excuse = broker_unreachable(own_stack.settings())
        healthz = []
        while time.monotonic() < down + OUTAGE_SECONDS:
            healthz.append(health(worker))
            assert worker.process.poll() is None, worker.log()
            time.sleep(0.5)
        own_redis.start()
        back = time.monotonic()

        # Every hit reaches the database: those in Redis before the outage, and the views made
        # during it, which waited in the API and were sent when Redis came back.
        assert wait_until(lambda: stats(client)["hits"] >= 12, 30), (stats(client), worker.log())
        flushed_in = time.monotonic() - back
        own_stack.flush(worker)  # and nothing is counted twice
        assert stats(client)["hits"] == 15
        own_stack.flush(worker)
        assert stats(client)["hits"] == 15

    assert during == [200, 200, 200]  # the API fails open meanwhile
    assert all(h["code"] == 200 for h in healthz), healthz
    # The worker's loop is stuck reconnecting, so its heartbeat ages; past its limit the probe
    # would still answer 200 for the reason the worker gives, and a restart would not help.
    assert excuse == "broker unreachable"
    assert broker_unreachable(own_stack.settings()) is None
    after = health(worker)
    assert after["code"] == 200 and float(str(after["heartbeat_age"])) < 10, after
    assert worker.process.poll() is None  # neither crashed nor exited
    assert "Connection to broker lost" in worker.log()
    # Celery retries the broker 2 s, then 4 s, 6 s, ... (at most 30 s) apart.
    assert flushed_in < 20, f"the flush completed {flushed_in:.1f}s after Redis returned"
