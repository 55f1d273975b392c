"""The hot path's budget: a token-authenticated GET of a todo makes one database round trip (one
statement reads the todo and compares the token's password version with the user's, which revokes
tokens older than a password change) and at most one Redis round trip, the rate limit's; its view
is buffered and sent later, with others, and the buffer is sent when the app stops. A create is
one round trip too (the insert, its count and the same check in one statement). Counted on the
wire, on real PostgreSQL and a Redis of our own."""

from __future__ import annotations

import asyncio
import base64
from pathlib import Path
from typing import Any

import pytest
import redis

from tests.support.databases import DatabaseFactory
from tests.support.instances import RedisServer, RoundTripCounter
from tests.support.servers import POSTGRES_PORT, add_user, free_port
from todo_api.app import create_app
from todo_api.hits import hit_counter
from todo_common.security import issue_token
from todo_common.settings import Settings


@pytest.mark.parametrize("rate_limits", [True, False], ids=["limited", "unlimited"])
async def test_token_get_item_costs_one_query_and_at_most_one_redis_call(
    postgres: str, databases: DatabaseFactory, tmp_path: Path, rate_limits: bool
) -> None:
    own_redis = RedisServer(free_port(), tmp_path)
    own_redis.start()
    wire = RoundTripCounter(POSTGRES_PORT)
    await wire.start()
    redis_wire = RoundTripCounter(own_redis.port)
    await redis_wire.start()
    direct_url = await asyncio.to_thread(databases.create, "postgres")
    proxied_url = direct_url.replace(f":{POSTGRES_PORT}/", f":{wire.port}/")
    settings = Settings(
        database_url=proxied_url,
        use_token_auth=True,
        use_rate_limits=rate_limits,
        redis_url=f"redis://127.0.0.1:{redis_wire.port}/0",
        rate_limit="1000/60s",  # type: ignore[arg-type]
    )
    app = create_app(settings)
    hits = hit_counter(app)
    assert hits is not None
    hits.send_every = 3600  # nothing is sent while round trips are counted; stopping sends
    try:
        async with app.test_app() as test_app:
            client = test_app.test_client()
            user_id = await asyncio.to_thread(add_user, direct_url, "hot", "path")
            token = issue_token(settings.secret_key, user_id, 60)
            headers = {"Authorization": f"Bearer {token}"}
            created = await client.post(
                "/api/v1.0/todos/", json={"name": "n", "task": "t"}, headers=headers
            )
            location = created.headers["Location"]
            await client.get(location, headers=headers)  # warm: the script is loaded once

            db_before, redis_before = wire.round_trips, redis_wire.round_trips
            response = await client.get(location, headers=headers)
            db_after, redis_after = wire.round_trips, redis_wire.round_trips
            create_round_trips = await _round_trips_of_a_write(client, headers, wire)
            sent_early = redis.Redis(port=own_redis.port).hgetall("todo:hits:pending")
        pending = redis.Redis(port=own_redis.port).hgetall("todo:hits:pending")
    finally:
        await wire.stop()
        await redis_wire.stop()
        own_redis.stop()

    assert response.status_code == 200
    assert db_after - db_before == 1
    assert redis_after - redis_before == (1 if rate_limits else 0)
    todo_id = location.rsplit("/", 1)[1]
    assert sent_early == {}
    assert pending == {f"{user_id}:{todo_id}".encode(): b"2"}  # both GETs, sent on stopping
    assert create_round_trips == 1


async def test_http_basic_get_item_costs_one_query_once_the_login_is_known(
    postgres: str, databases: DatabaseFactory
) -> None:
    """The first request checks the password (the login's read, then its own statement); every
    later one within the minute is one statement, like a token's."""
    wire = RoundTripCounter(POSTGRES_PORT)
    await wire.start()
    direct_url = await asyncio.to_thread(databases.create, "postgres")
    settings = Settings(
        database_url=direct_url.replace(f":{POSTGRES_PORT}/", f":{wire.port}/"),
        use_token_auth=False,
    )
    app = create_app(settings)
    try:
        async with app.test_app() as test_app:
            client = test_app.test_client()
            await asyncio.to_thread(add_user, direct_url, "basic", "a password")
            headers = {"Authorization": "Basic " + base64.b64encode(b"basic:a password").decode()}
            created = await client.post(
                "/api/v1.0/todos/", json={"name": "n", "task": "t"}, headers=headers
            )
            assert created.status_code == 201
            await client.get(created.headers["Location"], headers=headers)  # prepares the GET
            counts = []
            for _ in range(3):
                before = wire.round_trips
                response = await client.get(created.headers["Location"], headers=headers)
                assert response.status_code == 200
                counts.append(wire.round_trips - before)
            wrong = {"Authorization": "Basic " + base64.b64encode(b"basic:not it").decode()}
            refused = await client.get(created.headers["Location"], headers=wrong)
    finally:
        await wire.stop()

    assert counts == [1, 1, 1]
    assert refused.status_code == 401


async def _round_trips_of_a_write(client: Any, headers: dict[str, str], wire: Any) -> int:
    before = wire.round_trips
    response = await client.post(
        "/api/v1.0/todos/", json={"name": "n", "task": "t"}, headers=headers
    )
    assert response.status_code == 201
    return int(wire.round_trips - before)
