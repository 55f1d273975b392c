"""The fast route's edges, as an attacker tried them: HTTP/1.0 without Host, raw requests (duplicate
headers, bodies, forwarded headers), clients leaving mid-statement, statement timeouts, If-Match
races, count drift, and the tokens of revoked or deleted users."""

from __future__ import annotations

import asyncio
import contextlib
import re
from typing import Any

import asyncpg
import httpx
import pytest
from prometheus_client import REGISTRY

from tests.support import local_http
from tests.support.databases import DatabaseFactory
from tests.support.inprocess import fast_layer, insert_todo, served
from tests.support.servers import add_user
from todo_api.app import create_app
from todo_api.conditional import todo_tag
from todo_api.hot import FastTodoReads
from todo_api.resources import database
from todo_common.security import issue_token
from todo_common.settings import Settings

SECRET = "s" * 64


def _dsn(url: str) -> str:
    return url.replace("postgresql+asyncpg://", "postgresql://")


async def _setup(databases: DatabaseFactory, **settings: Any) -> tuple[str, Any, Any, int, str]:
    url = await asyncio.to_thread(databases.create, "postgres")
    base = dict(database_url=url, use_token_auth=True, secret_key=SECRET)
    fast_app = create_app(Settings(**{**base, **settings}))
    quart_app = create_app(Settings(**{**base, **settings}))
    layer = fast_layer(quart_app)
    parent = quart_app.asgi_app
    while parent.app is not layer:
        parent = parent.app
    parent.app = layer.app  # Quart only
    user = await asyncio.to_thread(add_user, url, "alice", "pw")
    return url, fast_app, quart_app, user, issue_token(SECRET, user, 600)


async def _raw(url: str, request: bytes) -> bytes:
    host, port = url.removeprefix("http://").split(":")
    reader, writer = await asyncio.open_connection(host, int(port))
    writer.write(request)
    await writer.drain()
    data = await asyncio.wait_for(reader.read(), 5)
    writer.close()
    return data


def _strip(answer: bytes) -> tuple[bytes, list[bytes], bytes, list[bytes]]:
    """The final answer's status line, its headers sorted and without Date and Server (a second
    may tick between two answers), its body, and the status lines of interim (1xx) answers."""
    interim = []
    while re.match(rb"HTTP/1\.[01] 1[0-9][0-9] ", answer):
        head, _, answer = answer.partition(b"\r\n\r\n")
        interim.append(head)
    head, _, body = answer.partition(b"\r\n\r\n")
    status, *headers = head.split(b"\r\n")
    kept = sorted(h for h in headers if not h.lower().startswith((b"date:", b"server:")))
    return status, kept, body, interim


async def test_http10_without_host_answers_as_quart_does(
    postgres: str, databases: DatabaseFactory
) -> None:
    url, fast_app, quart_app, user, token = await _setup(databases)
    todo = await insert_todo(url, user)
    request = (
        f"GET /api/v1.0/todos/{todo} HTTP/1.0\r\nAuthorization: Bearer {token}\r\n"
        "X-Request-ID: same\r\n\r\n"
    ).encode()
    async with served(fast_app) as fast_url, served(quart_app) as quart_url:
        fast = _strip(await _raw(fast_url, request))
        quart = _strip(await _raw(quart_url, request))
    # The fast route names the server's address, Quart an empty host ("http:///api/...").
    assert fast[2].replace(fast_url.encode(), b"X") == quart[2].replace(quart_url.encode(), b"X")


@pytest.mark.parametrize("path", [b"/api/v1.0/todos/", b"/api/v1.0/todos"])
async def test_a_list_query_that_is_not_utf8_answers_as_quart_does(
    path: bytes, postgres: str, databases: DatabaseFactory
) -> None:
    url, fast_app, quart_app, user, token = await _setup(databases)
    await insert_todo(url, user)
    request = (
        b"GET " + path + b"?page=\xff\xfe&per_page=1 HTTP/1.1\r\nHost: todo.test\r\n"
        b"Authorization: Bearer " + token.encode() + b"\r\nX-Request-ID: same\r\n"
        b"Connection: close\r\n\r\n"
    )
    async with served(fast_app) as fast_url, served(quart_app) as quart_url:
        fast = _strip(await _raw(fast_url, request))
        quart = _strip(await _raw(quart_url, request))
    assert fast == quart
    assert fast[0].startswith(b"HTTP/1.1 400")  # h11 refuses a target that is not ASCII


async def test_a_list_query_that_is_not_utf8_goes_on_to_quart() -> None:
    """Behind a server that lets it through, Quart answers it, whatever its answer is."""
    passed_on = []

    async def quart(scope: Any, receive: Any, send: Any) -> None:
        passed_on.append(scope["query_string"])

    layer = FastTodoReads(quart, gate=None, database=None, settings=None, hits=None, replies=None)  # type: ignore[arg-type]
    scope = {
        "type": "http",
        "method": "GET",
        "path": "/api/v1.0/todos/",
        "query_string": b"page=\xff",
        "headers": [],
        "root_path": "",
    }
    await layer(scope, None, None)  # type: ignore[arg-type]
    assert passed_on == [b"page=\xff"]


def _count(status: str, route: str) -> float:
    value = REGISTRY.get_sample_value(
        "todo_http_requests_total", {"method": "GET", "route": route, "status": status}
    )
    return value or 0.0


@contextlib.asynccontextmanager
async def _users_locked(url: str):  # type: ignore[no-untyped-def]
    blocker = await asyncpg.connect(_dsn(url))
    transaction = blocker.transaction()
    await transaction.start()
    await blocker.execute("LOCK TABLE users IN ACCESS EXCLUSIVE MODE")
    try:
        yield blocker
    finally:
        await transaction.rollback()
        await blocker.close()


async def _backends(url: str) -> list[tuple[str, str]]:
    conn = await asyncpg.connect(_dsn(url))
    try:
        rows = await conn.fetch(
            "SELECT state, query FROM pg_stat_activity "
            "WHERE datname = current_database() AND pid <> pg_backend_pid()"
        )
    finally:
        await conn.close()
    return [(r["state"], r["query"]) for r in rows]


@pytest.mark.parametrize("side", ["fast", "quart"])
async def test_a_client_leaving_mid_statement_is_499_and_leaves_the_pool_sound(
    side: str, postgres: str, databases: DatabaseFactory
) -> None:
    url, fast_app, quart_app, user, token = await _setup(databases, db_pool_size=2)
    app = fast_app if side == "fast" else quart_app
    todo = await insert_todo(url, user)
    auth = {"Authorization": f"Bearer {token}"}
    route = "/api/v1.0/todos/<todo_id>"
    before = {s: _count(s, route) for s in ("200", "499", "500")}
    async with served(app) as base:
        async with _users_locked(url):
            async with local_http.async_client(base_url=base) as client:
                for _ in range(2):  # the whole pool
                    with contextlib.suppress(httpx.ReadTimeout):
                        await client.get(f"/api/v1.0/todos/{todo}", headers=auth, timeout=0.5)
            await asyncio.sleep(0.5)
        await asyncio.sleep(0.5)
        async with local_http.async_client(base_url=base) as client:
            for _ in range(4):
                answer = await client.get(f"/api/v1.0/todos/{todo}", headers=auth)
                assert answer.status_code == 200, answer.text
        assert database(app).connections_in_use == 0
        states = await _backends(url)
        assert all(state == "idle" for state, _ in states), states
    after = {s: _count(s, route) - before[s] for s in before}
    assert after["500"] == 0, after  # a client leaving is not a server error
    assert after["499"] + after["200"] == 6, after


async def test_statement_timeout_is_503_and_the_connection_stays_usable(
    postgres: str, databases: DatabaseFactory
) -> None:
    url, fast_app, _, user, token = await _setup(
        databases, db_pool_size=1, db_statement_timeout=0.3
    )
    todo = await insert_todo(url, user)
    auth = {"Authorization": f"Bearer {token}"}
    async with served(fast_app) as base, local_http.async_client(base_url=base) as client:
        async with _users_locked(url):
            slow = await client.get(f"/api/v1.0/todos/{todo}", headers=auth, timeout=5)
            slow_put = await client.put(
                f"/api/v1.0/todos/{todo}", headers=auth, json={"name": "a", "task": "b"}, timeout=5
            )
        assert slow.status_code == 503 and slow_put.status_code == 503, (slow.text, slow_put.text)
        for _ in range(3):
            assert (await client.get(f"/api/v1.0/todos/{todo}", headers=auth)).status_code == 200


async def test_thirty_puts_with_one_if_match_one_wins(
    postgres: str, databases: DatabaseFactory
) -> None:
    url, fast_app, _, user, token = await _setup(databases, db_pool_size=10)
    todo = await insert_todo(url, user)
    headers = {"Authorization": f"Bearer {token}", "If-Match": f'"{todo_tag(todo, 1)}"'}
    async with (
        served(fast_app) as base,
        local_http.async_client(base_url=base, timeout=30) as client,
    ):
        answers = await asyncio.gather(
            *(
                client.put(
                    f"/api/v1.0/todos/{todo}", headers=headers, json={"name": f"n{i}", "task": "t"}
                )
                for i in range(32)
            )
        )
        statuses = sorted(a.status_code for a in answers)
        assert statuses.count(200) == 1 and statuses.count(412) == 31, statuses
        current = await client.get(
            f"/api/v1.0/todos/{todo}", headers={"Authorization": headers["Authorization"]}
        )
        assert current.headers["ETag"] == f'"{todo_tag(todo, 2)}"'


async def test_counts_do_not_drift_under_concurrent_create_and_delete(
    postgres: str, databases: DatabaseFactory
) -> None:
    url, fast_app, _, user, token = await _setup(databases, db_pool_size=10)
    auth = {"Authorization": f"Bearer {token}"}
    ids = [await insert_todo(url, user) for _ in range(10)]
    conn = await asyncpg.connect(_dsn(url))
    await conn.execute(
        "INSERT INTO todo_counts (owner_id, todos) VALUES ($1, 10) "
        "ON CONFLICT (owner_id) DO UPDATE SET todos = 10",
        user,
    )
    async with (
        served(fast_app) as base,
        local_http.async_client(base_url=base, timeout=30) as client,
    ):
        jobs = [client.delete(f"/api/v1.0/todos/{i}", headers=auth) for i in ids for _ in range(3)]
        jobs += [
            client.post("/api/v1.0/todos/", headers=auth, json={"name": "n", "task": "t"})
            for _ in range(20)
        ]
        answers = await asyncio.gather(*jobs)
        assert {a.status_code for a in answers} <= {200, 201, 404}
    rows = await conn.fetchval("SELECT count(*) FROM todos WHERE owner_id = $1", user)
    kept = await conn.fetchval("SELECT todos FROM todo_counts WHERE owner_id = $1", user)
    await conn.close()
    assert rows == kept == 20


RAW_CASES = {
    "two authorizations": "Authorization: Bearer junk\r\nAuthorization: Bearer {token}\r\n",
    "two authorizations, good first": "Authorization: Bearer {token}\r\nAuthorization: x\r\n",
    "two hosts": "Authorization: Bearer {token}\r\nHost: a.test\r\nHost: b.test\r\n",
    "two if-none-match": 'Authorization: Bearer {token}\r\nIf-None-Match: "x"\r\n'
    'If-None-Match: "{tag}"\r\n',
    "expect 100": "Authorization: Bearer {token}\r\nContent-Length: 0\r\nExpect: 100-continue\r\n",
    "body": "Authorization: Bearer {token}\r\nContent-Length: 2\r\n\r\nab",
    "chunked": "Authorization: Bearer {token}\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n",
    "upper host": "Authorization: Bearer {token}\r\nHost: TODO.Test:80\r\n",
    "fwd": "Authorization: Bearer {token}\r\nX-Forwarded-Host: evil.test\r\n"
    "X-Forwarded-Proto: https\r\nX-Forwarded-For: 1.2.3.4\r\n",
}


@pytest.mark.parametrize("case", sorted(RAW_CASES))
async def test_raw_requests_answer_as_quart_does(
    case: str, postgres: str, databases: DatabaseFactory
) -> None:
    url, fast_app, quart_app, user, token = await _setup(databases, trusted_proxies=1)
    todo = await insert_todo(url, user)
    extra = RAW_CASES[case].format(token=token, tag=todo_tag(todo, 1))
    host = "" if "Host:" in extra else "Host: todo.test\r\n"
    if "\r\n\r\n" not in extra:
        extra += "\r\n"
    request = (
        f"GET /api/v1.0/todos/{todo} HTTP/1.1\r\n{host}Connection: close\r\n"
        f"X-Request-ID: same\r\n{extra}"
    ).encode()
    async with served(fast_app) as fast_url, served(quart_app) as quart_url:
        fast = _strip(await _raw(fast_url, request))
        quart = _strip(await _raw(quart_url, request))
    assert fast == quart


@pytest.mark.parametrize("prepared", [True, False])
async def test_a_deleted_or_revoked_users_token_writes_nothing(
    prepared: bool, postgres: str, databases: DatabaseFactory
) -> None:
    url, fast_app, _, user, token = await _setup(databases, db_prepared_statements=prepared)
    todo = await insert_todo(url, user)
    auth = {"Authorization": f"Bearer {token}"}
    body = {"name": "x", "task": "y"}
    conn = await asyncpg.connect(_dsn(url))
    async with served(fast_app) as base, local_http.async_client(base_url=base) as client:
        await conn.execute("UPDATE users SET password_version = password_version + 1")
        revoked = [
            await client.post("/api/v1.0/todos/", headers=auth, json=body),
            await client.put(f"/api/v1.0/todos/{todo}", headers=auth, json=body),
            await client.delete(f"/api/v1.0/todos/{todo}", headers=auth),
            await client.get("/api/v1.0/todos/", headers=auth),
            await client.get(f"/api/v1.0/todos/{todo}", headers=auth),
        ]
        await conn.execute("DELETE FROM users")
        gone = [
            await client.post("/api/v1.0/todos/", headers=auth, json=body),
            await client.put(f"/api/v1.0/todos/{todo}", headers=auth, json=body),
            await client.delete(f"/api/v1.0/todos/{todo}", headers=auth),
        ]
    left = await conn.fetchval("SELECT count(*) FROM todos")
    await conn.close()
    assert [a.status_code for a in revoked + gone] == [401] * 8
    assert left == 0  # the cascade took alice's todo; nothing was written for her afterwards
