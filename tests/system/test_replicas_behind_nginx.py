"""Three `todo-api` replicas behind a real nginx configured as ingress-nginx configures its
upstreams (keep-alive upstream, X-Forwarded-* set by the proxy), on one PostgreSQL database and
one Redis key prefix, with TODO_TRUSTED_PROXIES=1.

What a deployment behind an ingress relies on: the rate limit holds for a client whichever replica
answers; the URLs we emit carry the scheme and host the client used at the proxy; the access logs
name the real client, never an address the client made up; and a replica taken out of the upstream
(reload), drained and stopped costs no request.
"""

from __future__ import annotations

import asyncio
import dataclasses
import signal
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.support import local_http
from tests.support.databases import DatabaseFactory
from tests.support.load import Load
from tests.support.nginx import Nginx, open_connections
from tests.support.servers import (
    ApiServer,
    delete_keys,
    get_token,
    new_key_prefix,
    start_api,
    wait_for_http,
    wait_until,
)

LIMIT = 5
TODOS = "/api/v1.0/todos/"
PUBLIC_HOST = "todo.example.com"
# What a client may send to the proxy to pose as someone else, or to pick our URLs' scheme and host.
SPOOFED = {
    "X-Forwarded-For": "203.0.113.9",
    "X-Forwarded-Proto": "http",
    "X-Forwarded-Host": "evil.example",
    "X-Real-IP": "203.0.113.9",
}


def start_replicas(settings: dict[str, str], folder: Path, count: int = 3) -> list[ApiServer]:
    """`count` replicas started at once (each takes a second or two to come up)."""
    replicas = [start_api(settings, folder, wait=False) for _ in range(count)]
    for replica in replicas:
        wait_for_http(replica)
    return replicas


@pytest.fixture(scope="module")
def database_url(postgres: str, databases: DatabaseFactory) -> str:
    return databases.create("postgres")


@pytest.fixture(scope="module")
def replicas(
    database_url: str, redis_url: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[list[ApiServer]]:
    """Token auth (no Argon2 per request) and a small shared limit."""
    prefix = new_key_prefix()
    settings = {
        "TODO_DATABASE_URL": database_url,
        "TODO_REDIS_URL": redis_url,
        "TODO_REDIS_KEY_PREFIX": prefix,
        "TODO_USE_TOKEN_AUTH": "true",
        "TODO_USE_RATE_LIMITS": "true",
        "TODO_RATE_LIMIT": f"{LIMIT}/60s",
        "TODO_TRUSTED_PROXIES": "1",
    }
    replicas = start_replicas(settings, tmp_path_factory.mktemp("replicas"))
    yield replicas
    for replica in replicas:
        replica.stop()
    delete_keys(redis_url, prefix)


@pytest.fixture(scope="module")
def proxy(replicas: list[ApiServer], tmp_path_factory: pytest.TempPathFactory) -> Iterator[Nginx]:
    nginx = Nginx(tmp_path_factory.mktemp("nginx"), replicas, scheme="https").start()
    yield nginx
    nginx.stop()


def bearer(replicas: list[ApiServer]) -> dict[str, str]:
    """The Authorization header of a new user's token."""
    return {"Authorization": f"Bearer {get_token(replicas[0], replicas[0].add_user())}"}


def answered_by(replicas: list[ApiServer], request_ids: set[str]) -> dict[str, list[dict]]:
    """Each request's access-log records, found by request id in every replica's log."""
    found: dict[str, list[dict]] = {}
    for replica in replicas:
        for record in replica.records():
            if record.get("event") == "request" and record.get("request_id") in request_ids:
                found.setdefault(str(record["request_id"]), []).append(record | {"by": replica.url})
    return found


def requests_served(replica: ApiServer) -> list[dict]:
    return [r for r in replica.records() if r.get("event") == "request"]


def test_one_clients_rate_limit_holds_across_replicas(
    proxy: Nginx, replicas: list[ApiServer]
) -> None:
    headers = bearer(replicas)
    request_ids = {f"rl-{uuid.uuid4().hex[:8]}-{n}" for n in range(36)}

    async def send_at_once() -> list[httpx.Response]:
        async with local_http.async_client(base_url=proxy.url, timeout=30) as http:
            return await asyncio.gather(
                *(
                    # Each request poses as another address: the proxy must not let it count.
                    http.get(TODOS, headers={**headers, "X-Request-ID": rid, **SPOOFED})
                    for rid in request_ids
                )
            )

    responses = asyncio.run(send_at_once())

    statuses = sorted(r.status_code for r in responses)
    assert statuses == [200] * LIMIT + [429] * (len(request_ids) - LIMIT)
    assert {r.headers["X-RateLimit-Limit"] for r in responses} == {str(LIMIT)}
    assert {r.headers["X-Request-ID"] for r in responses} == request_ids
    served_by = {records[0]["by"] for records in answered_by(replicas, request_ids).values()}
    assert len(served_by) >= 2, "one replica answered everything: nothing shared was tested"


def test_urls_carry_the_scheme_and_host_the_client_used_at_the_proxy(
    proxy: Nginx, replicas: list[ApiServer]
) -> None:
    public = f"https://{PUBLIC_HOST}{TODOS}"
    headers = {**bearer(replicas), **SPOOFED, "Host": PUBLIC_HOST}
    with local_http.client(base_url=proxy.url, headers=headers, timeout=10) as http:
        created = http.post(TODOS, json={"name": "n", "task": "t"})
        item_path = httpx.URL(created.headers["Location"]).path
        item = http.get(item_path)
        listed = http.get(TODOS)

    assert created.status_code == 201, created.text
    assert created.headers["Location"].startswith(public)
    assert item.json()["url"] == created.headers["Location"]
    assert listed.json()["urls"] == [created.headers["Location"]]
    assert listed.json()["meta"]["first"].startswith(public)


def test_access_logs_name_the_real_client_not_a_forwarded_one(
    proxy: Nginx, replicas: list[ApiServer]
) -> None:
    request_ids = {f"ip-{uuid.uuid4().hex[:8]}-{n}" for n in range(2)}
    with local_http.client(base_url=proxy.url, timeout=10) as http:
        for rid in request_ids:
            assert http.get(TODOS, headers={**SPOOFED, "X-Request-ID": rid}).status_code == 401

    # A request's access line is written before its response goes out.
    logged = answered_by(replicas, request_ids)
    assert set(logged) == request_ids
    assert {r["client"] for records in logged.values() for r in records} == {"127.0.0.1"}


@pytest.fixture
def unlimited_replicas(database_url: str, tmp_path: Path) -> Iterator[list[ApiServer]]:
    """No rate limits (the load must only see 2xx), password auth."""
    replicas = start_replicas({"TODO_DATABASE_URL": database_url}, tmp_path)
    yield replicas
    for replica in replicas:
        replica.stop(signal.SIGKILL)


@pytest.mark.serial
@pytest.mark.timeout(120)
def test_a_replica_removed_from_the_upstream_then_stopped_loses_no_request(
    unlimited_replicas: list[ApiServer], tmp_path: Path
) -> None:
    nginx = Nginx(tmp_path / "nginx", unlimited_replicas).start()
    leaving = unlimited_replicas[-1]
    leaving_port = int(leaving.url.rsplit(":", 1)[1])
    # The load's users and database are the replicas'; its requests go through nginx.
    through_nginx = dataclasses.replace(unlimited_replicas[0], url=nginx.url)
    try:
        with Load(through_nginx) as load:
            assert wait_until(lambda: len(load.outcomes) >= 150, 30), "the load never got going"
            assert open_connections(leaving_port) > 0, "nginx never used the leaving replica"

            nginx.remove(leaving)
            # The old nginx worker finishes what it sent to the replica, then closes it all.
            assert wait_until(lambda: open_connections(leaving_port) == 0, 15), nginx.error_log()
            served_before_stop = len(requests_served(leaving))
            assert leaving.stop(signal.SIGTERM) == 0, leaving.log()[-2000:]
            stopped_at = time.monotonic()
            assert wait_until(lambda: len(load.since(stopped_at)) >= 150, 30)
            outcomes = load.stop()
    finally:
        nginx.stop()

    failed = [str(o) for o in outcomes if o.status is None or not 200 <= o.status < 300]
    assert not failed, failed[:5]
    # It served its share until the reload, then nothing more reached it: nothing was in flight
    # at it when it got SIGTERM.
    assert served_before_stop > 0
    assert len(requests_served(leaving)) == served_before_stop
    assert all(requests_served(replica) for replica in unlimited_replicas[:-1])
