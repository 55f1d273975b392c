"""Views of todos are counted in Redis: successful GETs only, once each, with or without rate
limits; no field is ever written for a failed GET (no zero or negative counts)."""

from __future__ import annotations

import asyncio
import time

import httpx
import pytest
import redis

from tests.api.test_resp import server  # noqa: F401 (fixture)
from tests.support.databases import ServerPool
from tests.support.instances import RedisServer
from tests.support.servers import ApiServer
from todo_api.hits import SEND_EVERY_SECONDS, HitCounter
from todo_api.redis_client import RedisClient
from todo_common.hits import HitKeys, hit_field
from todo_common.settings import Settings


@pytest.fixture(params=["limited", "unlimited"])
def counting_api(servers: ServerPool, redis_url: str, request: pytest.FixtureRequest) -> ApiServer:
    """Hit counting on, with and without rate limits (the two once shared a Redis call)."""
    limits = {"TODO_USE_RATE_LIMITS": "true", "TODO_RATE_LIMIT": "8/60s"}
    return servers.get(
        "postgres", TODO_REDIS_URL=redis_url, **(limits if request.param == "limited" else {})
    )


def pending(api: ApiServer) -> dict[str, int]:
    """The hits waiting in Redis, once the API has sent the views it buffers (every 0.1 s)."""
    time.sleep(3 * SEND_EVERY_SECONDS)
    client = redis.Redis.from_url(api.env["TODO_REDIS_URL"], decode_responses=True)
    try:
        counts = client.hgetall(f"{api.env['TODO_REDIS_KEY_PREFIX']}hits:pending")
    finally:
        client.close()
    return {field: int(value) for field, value in counts.items()}


def _todo(client: httpx.Client) -> tuple[str, str]:
    response = client.post("/api/v1.0/todos/", json={"name": "n", "task": "t"})
    assert response.status_code == 201
    url = response.headers["Location"]
    return url, url.rsplit("/", 1)[1]


def _user_id(api: ApiServer, client: httpx.Client) -> str:
    # The field is "<owner id>:<todo id>"; find the owner id from a first counted view.
    url, todo_id = _todo(client)
    assert client.get(url).status_code == 200
    (field,) = [field for field in pending(api) if field.endswith(f":{todo_id}")]
    return field.split(":")[0]


def test_successful_gets_and_304s_count(counting_api: ApiServer) -> None:
    with counting_api.client(auth=counting_api.add_user()) as client:
        owner = _user_id(counting_api, client)
        url, todo_id = _todo(client)
        tag = client.get(url).headers["ETag"]
        assert client.get(url, headers={"If-None-Match": tag}).status_code == 304
        assert client.head(url).status_code == 200  # HEAD is not a view
        assert pending(counting_api)[f"{owner}:{todo_id}"] == 2


def test_failed_gets_count_nothing(counting_api: ApiServer) -> None:
    with (
        counting_api.client(auth=counting_api.add_user()) as owner,
        counting_api.client(auth=counting_api.add_user()) as stranger,
    ):
        stranger_id = _user_id(counting_api, stranger)
        url, todo_id = _todo(owner)
        assert stranger.get(url).status_code == 404
        missing = url.rsplit("/", 1)[0] + "/987654321"
        assert stranger.get(missing).status_code == 404
        fields = pending(counting_api)
        assert f"{stranger_id}:{todo_id}" not in fields
        assert f"{stranger_id}:987654321" not in fields
        assert all(count > 0 for count in fields.values()), fields


def test_a_rate_limited_get_is_not_a_view(servers: ServerPool, redis_url: str) -> None:
    api = servers.get(
        "postgres", TODO_REDIS_URL=redis_url, TODO_USE_RATE_LIMITS="true", TODO_RATE_LIMIT="4/60s"
    )
    with api.client(auth=api.add_user()) as client:
        owner = _user_id(api, client)  # requests 1 and 2
        url, todo_id = _todo(client)  # 3
        statuses = [client.get(url).status_code for _ in range(3)]  # 4, then two over the limit
    assert statuses == [200, 429, 429]
    assert pending(api)[f"{owner}:{todo_id}"] == 1


async def test_views_sent_in_a_call_that_timed_out_are_not_counted_twice(
    server: RedisServer,  # noqa: F811
) -> None:
    """A reply timeout does not mean Redis did not run the command: a hung Redis (SIGSTOP)
    still runs what it had received once it goes on, after the client gave up. The sender keeps
    such a batch to send again, so its views must not then be counted a second time."""
    settings = Settings(redis_url=server.url, redis_key_prefix="t:", redis_timeout=0.3)
    client = RedisClient(settings)
    await client.open()
    hits = HitCounter(client, settings)
    try:
        hits.count(1, 7)
        await hits.send()  # one view counted (and the script loaded)
        hits.count(1, 7)
        server.pause()
        await hits.send()  # timed out: kept for the next send
        server.resume()
        await asyncio.sleep(hits.down.backoff + 0.2)  # past the sender's back-off
        await hits.send()
    finally:
        await client.close()
    counted = redis.Redis(port=server.port).hget(HitKeys("t:").pending, hit_field(1, 7))
    assert counted == b"2"  # two views
