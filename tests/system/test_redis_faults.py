"""Redis failing under load: the API keeps answering (its rate limiter and hit counter fail open),
counts every request served without Redis in `todo_redis_failures_total`, and limits again as soon
as Redis is back, without a restart.

Two faults: Redis stopped (its process gone: connections reset, new ones refused) and Redis hung
(SIGSTOP: connections open but nothing answers, so only the client's timeouts help).
"""

from __future__ import annotations

import shutil
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.databases import DatabaseFactory
from tests.support.instances import RedisServer
from tests.support.load import Load, Outcome
from tests.support.servers import ApiServer, free_port, need_program, scrape, start_api, wait_until

pytestmark = [pytest.mark.timeout(60), pytest.mark.serial]

LIMIT, WINDOW = 15, 2  # per user: each load thread spends its budget well within a window
OUTAGE_SECONDS = 4.0  # two windows: without fail-open the load would see 429s in it
# A request while Redis hangs waits for the client's timeouts (0.5 s a try), never long.
SLOWEST_FAIL_OPEN_SECONDS = 3.0


@pytest.fixture
def own_redis(tmp_path: Path) -> Iterator[RedisServer]:
    need_program("redis-server", shutil.which("redis-server"))
    server = RedisServer(free_port(), tmp_path)
    server.start()
    yield server
    server.resume()
    server.stop()


@pytest.fixture
def limited_api(
    own_redis: RedisServer, postgres: str, databases: DatabaseFactory, tmp_path: Path
) -> Iterator[ApiServer]:
    """Rate limits and hit counting on, both in the throwaway Redis; the data in PostgreSQL."""
    api = start_api(
        {
            "TODO_DATABASE_URL": databases.create("postgres"),
            "TODO_REDIS_URL": own_redis.url,
            "TODO_USE_RATE_LIMITS": "true",
            "TODO_RATE_LIMIT": f"{LIMIT}/{WINDOW}s",
        },
        tmp_path,
    )
    yield api
    api.stop()


def failures(api: ApiServer, feature: str) -> float:
    return scrape(api.url, "todo_redis_failures_total", feature=feature)


def well_formed_429(outcome: Outcome) -> bool:
    body = outcome.json()
    return (
        outcome.status == 429
        and isinstance(body, dict)
        and body["status"] == 429
        and outcome.headers["x-ratelimit-limit"] == str(LIMIT)
        and outcome.headers["x-ratelimit-remaining"] == "0"
        and int(outcome.headers["x-ratelimit-reset"]) >= int(time.time()) - 5
        and 1 <= int(outcome.headers["retry-after"]) <= WINDOW
    )


@pytest.mark.parametrize("fault", ["stopped", "hung"])
def test_redis_outage_under_load_fails_open_then_limiting_resumes(
    fault: str, own_redis: RedisServer, limited_api: ApiServer
) -> None:
    with Load(limited_api) as load:
        # Limiting works before the fault: the load is throttled.
        assert wait_until(lambda: any(o.status == 429 for o in load.outcomes), 15), load.outcomes
        limited_before = failures(limited_api, "rate_limit")
        hits_before = failures(limited_api, "hits")

        if fault == "stopped":
            own_redis.stop()
        else:
            own_redis.pause()
        down = time.monotonic()
        time.sleep(OUTAGE_SECONDS)
        up = time.monotonic()
        if fault == "stopped":
            own_redis.start()  # empty: every window starts again
        else:
            own_redis.resume()
        back = time.monotonic()

        # Limiting resumes by itself: 429s with their X-RateLimit-* headers again.
        def limiting_again() -> bool:
            return any(o.status == 429 for o in load.since(back))

        assert wait_until(limiting_again, 10), [str(o) for o in load.since(back)][-20:]
        resumed_after = min(o.finished for o in load.since(back) if o.status == 429) - back
        limited_during = failures(limited_api, "rate_limit") - limited_before
        hits_during = failures(limited_api, "hits") - hits_before

    outcomes = load.outcomes
    problems = [
        str(o)
        for o in outcomes
        if not (o.status in (200, 201) or (o.status == 429 and well_formed_429(o)))
    ]
    assert not problems, problems[:20]

    during = load.between(down, up)
    assert len(during) >= 20, f"too little load during the outage: {len(during)} requests"
    assert all(o.status in (200, 201) for o in during), [str(o) for o in during if o.status]
    assert all("x-ratelimit-limit" not in o.headers for o in during)  # served without Redis
    slowest = max(o.seconds for o in during)
    assert slowest < SLOWEST_FAIL_OPEN_SECONDS, f"a request took {slowest:.2f}s"

    # Each request served without Redis is counted; views wait in the API's buffer, and each
    # failed attempt to send them is counted too.
    assert limited_during >= len(during)
    item_views = [o for o in during if o.name.startswith("GET http")]
    assert item_views and hits_during >= 1
    assert "redis unavailable; failing open" in limited_api.log()
    assert "redis unavailable; views wait in the process" in limited_api.log()
    assert limited_api.process.poll() is None  # the same process throughout
    assert resumed_after < 5, f"limiting resumed only {resumed_after:.1f}s after Redis returned"
