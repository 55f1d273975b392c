"""Rate limiting in real Redis: the seed's headers, 429 + Retry-After, per user and per address,
shared by replicas, expiring keys, and failing open when Redis goes away."""

from __future__ import annotations

import time
import uuid
from pathlib import Path

import pytest
import redis

from tests.api.test_todos import TODOS
from tests.support.instances import RedisServer
from tests.support.servers import ApiServer, free_port, fresh_address, scrape, start_api, wait_until


def address() -> dict[str, str]:
    """Pose as a fresh client address (the server trusts one proxy hop)."""
    return {"X-Forwarded-For": fresh_address()}


def test_headers_count_down_then_429(limited_api: ApiServer) -> None:
    with limited_api.client(auth=limited_api.add_user()) as http:
        responses = [http.get(TODOS) for _ in range(6)]

    assert [r.status_code for r in responses] == [200] * 5 + [429]
    assert [r.headers["X-RateLimit-Remaining"] for r in responses] == ["4", "3", "2", "1", "0", "0"]
    assert all(r.headers["X-RateLimit-Limit"] == "5" for r in responses)
    reset = int(responses[0].headers["X-RateLimit-Reset"])
    assert time.time() < reset <= time.time() + 16
    limited = responses[-1]
    assert 1 <= int(limited.headers["Retry-After"]) <= 15
    assert limited.json()["status"] == 429
    assert limited.json()["error"] == "too many requests"


def test_each_user_has_its_own_budget(limited_api: ApiServer) -> None:
    with limited_api.client(auth=limited_api.add_user()) as first:
        for _ in range(5):
            first.get(TODOS)
        assert first.get(TODOS).status_code == 429
    with limited_api.client(auth=limited_api.add_user()) as second:
        response = second.get(TODOS)
    assert response.status_code == 200
    assert response.headers["X-RateLimit-Remaining"] == "4"


def test_anonymous_callers_are_limited_by_address(limited_api: ApiServer) -> None:
    me, other = address(), address()
    with limited_api.client() as http:
        statuses = [http.get(TODOS, headers=me).status_code for _ in range(6)]
        elsewhere = http.get(TODOS, headers=other)

    assert statuses == [401] * 5 + [429]
    assert elsewhere.status_code == 401
    assert elsewhere.headers["X-RateLimit-Remaining"] == "4"


def test_keys_expire_with_the_window(limited_api: ApiServer, redis_url: str) -> None:
    me = address()
    with limited_api.client() as http:
        http.get(TODOS, headers=me)

    client = redis.Redis.from_url(redis_url)
    prefix = limited_api.env["TODO_REDIS_KEY_PREFIX"]
    key = f"{prefix}rl:addr:{me['X-Forwarded-For']}"
    ttl = client.pttl(key)
    client.close()
    assert 0 < ttl <= 15_000


@pytest.fixture
def short_window(servers, redis_url: str):  # type: ignore[no-untyped-def]
    return servers.get(
        "sqlite",
        TODO_USE_RATE_LIMITS="true",
        TODO_REDIS_URL=redis_url,
        TODO_RATE_LIMIT="2/1s",
        TODO_TRUSTED_PROXIES="1",
    )


def test_the_limit_resets_when_the_window_ends(short_window: ApiServer) -> None:
    me = address()
    with short_window.client() as http:
        assert [http.get(TODOS, headers=me).status_code for _ in range(3)] == [401, 401, 429]
        time.sleep(1.2)
        assert http.get(TODOS, headers=me).status_code == 401


def test_replicas_share_one_budget(redis_url: str, databases, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    settings = {
        "TODO_DATABASE_URL": databases.create("sqlite"),
        "TODO_USE_RATE_LIMITS": "true",
        "TODO_REDIS_URL": redis_url,
        "TODO_REDIS_KEY_PREFIX": f"todo-test-{uuid.uuid4().hex[:8]}:",
    }
    replicas = [start_api(settings, tmp_path), start_api(settings, tmp_path)]
    try:
        user = replicas[0].add_user()
        statuses = []
        for i in range(8):
            with replicas[i % 2].client(auth=user) as http:
                statuses.append(http.get(TODOS).status_code)
    finally:
        for replica in replicas:
            replica.stop()
    assert statuses == [200] * 5 + [429] * 3


def _failures(server: ApiServer) -> float:
    return scrape(server.url, "todo_redis_failures_total", feature="rate_limit")


def test_redis_outage_fails_open_then_limiting_resumes(databases, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    own_redis = RedisServer(free_port(), tmp_path)
    own_redis.start()
    server = start_api(
        {
            "TODO_DATABASE_URL": databases.create("sqlite"),
            "TODO_USE_RATE_LIMITS": "true",
            "TODO_REDIS_URL": own_redis.url,
            "TODO_RATE_LIMIT": "3/30s",
        },
        tmp_path,
    )
    try:
        user = server.add_user()
        with server.client(auth=user) as http:
            assert http.get(TODOS).headers["X-RateLimit-Remaining"] == "2"

            own_redis.stop()
            during = [http.get(TODOS) for _ in range(6)]
            assert [r.status_code for r in during] == [200] * 6
            assert all("X-RateLimit-Remaining" not in r.headers for r in during)
            assert _failures(server) >= 6
            assert "redis unavailable; failing open" in server.log()

            own_redis.start()  # an empty Redis: the window starts again
            assert wait_until(lambda: "X-RateLimit-Limit" in http.get(TODOS).headers, 10)
            statuses = [http.get(TODOS).status_code for _ in range(4)]
            assert 429 in statuses
    finally:
        server.stop()
        own_redis.stop()


def test_once_guesses_spend_the_budget_even_the_right_password_waits(
    limited_api: ApiServer,
) -> None:
    name, password = limited_api.add_user()
    me = address()
    with limited_api.client() as http:
        guesses = [http.get(TODOS, auth=(name, f"guess {i}"), headers=me) for i in range(5)]
        right = http.get(TODOS, auth=(name, password), headers=me)

    assert [g.status_code for g in guesses] == [401] * 5
    assert right.status_code == 429  # no oracle: the right guess looks like the wrong ones
    assert right.headers["X-RateLimit-Remaining"] == "0"
    assert "Retry-After" in right.headers


@pytest.fixture
def limited_token_api(servers, backend: str, redis_url: str) -> ApiServer:  # type: ignore[no-untyped-def]
    return servers.get(
        backend,
        TODO_USE_TOKEN_AUTH="true",
        TODO_USE_RATE_LIMITS="true",
        TODO_REDIS_URL=redis_url,
        TODO_RATE_LIMIT="5/15s",
        TODO_TRUSTED_PROXIES="1",
    )


TOKEN_ROUTE = "/auth/request-token"


def test_token_route_is_limited_per_username_across_addresses(
    limited_token_api: ApiServer,
) -> None:
    victim, password = limited_token_api.add_user()
    bystander = limited_token_api.add_user()
    with limited_token_api.client() as http:
        guesses = [
            http.get(TOKEN_ROUTE, auth=(victim, f"guess {i}"), headers=address()) for i in range(6)
        ]
        right = http.get(TOKEN_ROUTE, auth=(victim, password), headers=address())
        other = http.get(TOKEN_ROUTE, auth=bystander, headers=address())

    assert [g.status_code for g in guesses] == [401] * 5 + [429]
    assert guesses[-1].json()["status"] == 429
    assert "Retry-After" in guesses[-1].headers
    assert right.status_code == 429  # from a fresh address, the name's budget is spent
    assert other.status_code == 200  # other users are not locked out


def test_an_address_over_its_budget_spends_no_other_names_budget(
    limited_token_api: ApiServer,
) -> None:
    names = [limited_token_api.add_user() for _ in range(3)]
    sprayer = address()
    with limited_token_api.client() as http:
        guesses = [
            http.get(TOKEN_ROUTE, auth=(names[i % 3][0], f"guess {i}"), headers=sprayer)
            for i in range(18)  # 6 per name: more than a name's budget, were they counted
        ]
        # From elsewhere, each name still has its whole budget: the right password works.
        rightful = [http.get(TOKEN_ROUTE, auth=user, headers=address()) for user in names]

    assert [g.status_code for g in guesses] == [401] * 5 + [429] * 13
    assert [r.status_code for r in rightful] == [200] * 3
    # Only the 5 attempts within the address's budget were counted against names (2, 2 and 1);
    # the headers show the tighter of the two windows, the name's.
    assert [r.headers["X-RateLimit-Remaining"] for r in rightful] == ["2", "2", "3"]


def test_token_route_fails_closed_while_redis_is_down(databases, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    own_redis = RedisServer(free_port(), tmp_path)
    own_redis.start()
    server = start_api(
        {
            "TODO_DATABASE_URL": databases.create("sqlite"),
            "TODO_USE_TOKEN_AUTH": "true",
            "TODO_USE_RATE_LIMITS": "true",
            "TODO_REDIS_URL": own_redis.url,
            "TODO_RATE_LIMIT": "50/30s",
        },
        tmp_path,
    )
    try:
        user = server.add_user()
        with server.client() as http:
            token = http.get(TOKEN_ROUTE, auth=user).json()["token"]
            bearer = {"Authorization": f"Bearer {token}"}

            own_redis.stop()
            refused = http.get(TOKEN_ROUTE, auth=user)
            served = http.get(TODOS, headers=bearer)

            own_redis.start()
            assert wait_until(lambda: http.get(TOKEN_ROUTE, auth=user).status_code == 200, 10)
    finally:
        server.stop()
        own_redis.stop()
    assert refused.status_code == 503
    assert refused.json()["status"] == 503
    assert refused.headers["content-type"] == "application/json"
    assert int(refused.headers["Retry-After"]) > 0
    assert "token" not in refused.json()
    assert served.status_code == 200  # the rest of the API fails open
