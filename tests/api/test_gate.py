"""The request gate under hostile concurrency: guesses sent at once never get past the limit, a
flood from one address does not slow anyone else, and a flood never switches the limiter off.

Every case runs against a real `todo-api` on PostgreSQL (and SQLite where it applies) with a real
Redis, its requests in flight at once.
"""

from __future__ import annotations

import asyncio
import base64
import statistics
import threading
import time
import uuid
from collections import Counter

import httpx
import pytest

from tests.api.test_todos import TODOS
from tests.support import local_http
from tests.support.databases import ServerPool
from tests.support.servers import ApiServer, fresh_address, scrape

LIMIT = 5
TOKEN_ROUTE = "/auth/request-token"


def basic(name: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{name}:{password}".encode()).decode()


async def _send_at_once(
    server: ApiServer, path: str, headers: list[dict[str, str]], timeout: float = 60
) -> list[httpx.Response]:
    """Send one request per header set, all in flight together (a connection each)."""
    limits = httpx.Limits(max_connections=len(headers), max_keepalive_connections=0)
    async with local_http.async_client(base_url=server.url, limits=limits, timeout=timeout) as http:
        return list(await asyncio.gather(*(http.get(path, headers=h) for h in headers)))


def send_at_once(server: ApiServer, path: str, headers: list[dict[str, str]]) -> Counter[int]:
    responses = asyncio.run(_send_at_once(server, path, headers))
    for response in responses:
        assert response.headers["content-type"] == "application/json", response.text
    return Counter(response.status_code for response in responses)


@pytest.fixture
def password_api(servers: ServerPool, backend: str, redis_url: str) -> ApiServer:
    return servers.get(
        backend,
        TODO_USE_RATE_LIMITS="true",
        TODO_REDIS_URL=redis_url,
        TODO_RATE_LIMIT=f"{LIMIT}/15s",
        TODO_TRUSTED_PROXIES="1",
    )


@pytest.fixture
def token_api(servers: ServerPool, backend: str, redis_url: str) -> ApiServer:
    return servers.get(
        backend,
        TODO_USE_TOKEN_AUTH="true",
        TODO_USE_RATE_LIMITS="true",
        TODO_REDIS_URL=redis_url,
        TODO_RATE_LIMIT=f"{LIMIT}/15s",
        TODO_TRUSTED_PROXIES="1",
    )


def password_checks(server: ApiServer) -> float:
    return scrape(server.url, "todo_password_checks_total")


def test_guesses_sent_at_once_are_judged_at_most_limit_times(password_api: ApiServer) -> None:
    name, password = password_api.add_user()
    me = fresh_address()
    guesses = [f"guess {i}" for i in range(39)] + [password]
    checks_before = password_checks(password_api)

    statuses = send_at_once(
        password_api,
        TODOS,
        [{"Authorization": basic(name, guess), "X-Forwarded-For": me} for guess in guesses],
    )

    judged = statuses[200] + statuses[401]
    assert judged <= LIMIT, statuses
    # The rest are refused unjudged: over the limit, or no hashing slot free in time.
    assert statuses[429] + statuses[503] == len(guesses) - judged, statuses
    assert password_checks(password_api) - checks_before <= LIMIT


def test_token_route_judges_at_most_limit_names_per_address_at_once(token_api: ApiServer) -> None:
    name, password = token_api.add_user()
    me = fresh_address()
    attempts = [basic(f"nobody-{uuid.uuid4().hex[:8]}", "guess") for _ in range(29)]
    attempts.append(basic(name, password))
    checks_before = password_checks(token_api)

    statuses = send_at_once(
        token_api, TOKEN_ROUTE, [{"Authorization": a, "X-Forwarded-For": me} for a in attempts]
    )

    assert statuses[200] + statuses[401] <= LIMIT, statuses
    assert password_checks(token_api) - checks_before <= LIMIT


def test_a_flood_never_switches_the_limiter_off(password_api: ApiServer) -> None:
    """400 requests at once from one address: exactly LIMIT are let through to be judged."""
    me = fresh_address()
    failures_before = scrape(password_api.url, "todo_redis_failures_total")

    statuses = send_at_once(password_api, TODOS, [{"X-Forwarded-For": me}] * 400)

    assert statuses[401] == LIMIT, statuses
    assert set(statuses) <= {401, 429, 503}, statuses
    assert scrape(password_api.url, "todo_redis_failures_total") == failures_before


def test_token_route_flood_admits_exactly_the_limit(token_api: ApiServer) -> None:
    """400 attempts at once from one address: exactly LIMIT get past the limiter. Each of them is
    judged (401) or, when no hashing slot comes free in time, refused (503); none is let through
    unlimited, and nothing fails open."""
    me = fresh_address()
    name, _ = token_api.add_user()
    failures_before = scrape(token_api.url, "todo_redis_failures_total")

    responses = asyncio.run(
        _send_at_once(
            token_api,
            TOKEN_ROUTE,
            [{"Authorization": basic(name, "wrong"), "X-Forwarded-For": me}] * 400,
        )
    )

    statuses = Counter(r.status_code for r in responses)
    assert set(statuses) <= {401, 429, 503}, statuses
    no_slot = [r for r in responses if r.status_code == 503 and "passwords" in r.json()["message"]]
    assert statuses[401] + len(no_slot) == LIMIT, statuses
    assert all(int(r.headers["Retry-After"]) >= 1 for r in responses if r.status_code != 401)
    assert scrape(token_api.url, "todo_redis_failures_total") == failures_before


@pytest.mark.serial
@pytest.mark.parametrize("credential", ["empty password", "wrong password"])
def test_a_flood_from_one_address_does_not_slow_another_client(
    password_api: ApiServer, credential: str
) -> None:
    """60 connections guessing from one address spend its budget at once and are then refused
    cheaply; a client elsewhere keeps its latency. It uses a user (and address) for each
    LIMIT - 1 requests, so its own windows never run out."""
    victims = [(password_api.add_user(), fresh_address()) for _ in range(12)]

    def victim_latencies(users: list[tuple[tuple[str, str], str]]) -> list[float]:
        latencies = []
        for user, victim_address in users:
            with password_api.client(auth=user) as http:
                for _ in range(LIMIT - 1):
                    started = time.perf_counter()
                    response = http.get(TODOS, headers={"X-Forwarded-For": victim_address})
                    assert response.status_code == 200, response.text
                    latencies.append(time.perf_counter() - started)
                    time.sleep(0.02)
        return latencies

    for user, victim_address in victims:  # each password is verified once, then remembered
        with password_api.client(auth=user) as http:
            assert http.get(TODOS, headers={"X-Forwarded-For": victim_address}).status_code == 200
    unloaded = statistics.median(victim_latencies(victims[:6]))

    flooder = fresh_address()
    password = "" if credential == "empty password" else "guess"
    stop = threading.Event()
    flood_statuses: Counter[int] = Counter()

    async def flood() -> None:
        limits = httpx.Limits(max_connections=60)
        async with local_http.async_client(
            base_url=password_api.url, limits=limits, timeout=30
        ) as http:

            async def one_connection(i: int) -> None:
                headers = {
                    "Authorization": basic(f"anyname-{i}", password),
                    "X-Forwarded-For": flooder,
                }
                while not stop.is_set():
                    response = await http.get(TODOS, headers=headers)
                    flood_statuses[response.status_code] += 1
                    await asyncio.sleep(0.25)

            await asyncio.gather(*(one_connection(i) for i in range(60)))

    flooding = threading.Thread(target=lambda: asyncio.run(flood()), daemon=True)
    flooding.start()
    try:
        time.sleep(1.0)  # the flood is in full swing
        loaded = victim_latencies(victims[6:])
    finally:
        stop.set()
        flooding.join(30)

    assert flood_statuses[429] > 100, flood_statuses
    assert flood_statuses[401] <= LIMIT, flood_statuses
    median = statistics.median(loaded)
    assert median <= max(4 * unloaded, unloaded + 0.02), (unloaded, median, flood_statuses)
    assert max(loaded) < 1.0, (unloaded, max(loaded))


def test_getting_a_token_does_not_spend_the_api_window(token_api: ApiServer) -> None:
    user = token_api.add_user()
    me = {"X-Forwarded-For": fresh_address()}
    with token_api.client() as http:
        token = http.get(TOKEN_ROUTE, auth=user, headers=me).json()["token"]
        first = http.get(TODOS, headers={**me, "Authorization": f"Bearer {token}"})
    assert first.status_code == 200
    assert first.headers["X-RateLimit-Remaining"] == str(LIMIT - 1)


def test_a_right_password_after_the_budget_is_spent_is_not_judged(password_api: ApiServer) -> None:
    """No oracle: once the address's guesses are spent, the right password gets 429 too."""
    name, password = password_api.add_user()
    me = {"X-Forwarded-For": fresh_address()}
    with password_api.client() as http:
        wrong = [http.get(TODOS, auth=(name, f"guess {i}"), headers=me) for i in range(LIMIT)]
        right = http.get(TODOS, auth=(name, password), headers=me)
    assert [r.status_code for r in wrong] == [401] * LIMIT
    assert right.status_code == 429
    assert "Retry-After" in right.headers
