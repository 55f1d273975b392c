"""The fast route (`todo_api.hot`) answers GET of a todo and of the list exactly as the Quart
routes do.

Two apps on the same database, each served by a real hypercorn in this process: one as built
(the fast route in front), one with the fast route taken out, so Quart answers. Each has its own
Redis key prefix, so both see the same rate limit windows. Every case of the gate and the
conditional tests is sent to both, in the same order; status, body and headers must be the same
(the time-dependent Date and X-RateLimit-Reset aside), and so must the views they count. The fast
app's Quart is watched: it must not have seen one of these requests.
"""

from __future__ import annotations

import asyncio
import base64
import re
import time
import uuid
from typing import Any

import httpx
import pytest
import redis
from sqlalchemy import text

from tests.support import local_http
from tests.support.databases import DatabaseFactory
from tests.support.inprocess import fast_layer, insert_todo, served
from tests.support.servers import add_user
from todo_api.app import create_app
from todo_api.conditional import todo_tag
from todo_api.hits import hit_counter
from todo_common.db import create_engine
from todo_common.security import issue_token
from todo_common.settings import Settings

LIMIT = 80  # per user per window: the limiter's 429 is one of the cases
IGNORED = {"date", "server", "x-ratelimit-reset"}


class QuartCalls:
    """ASGI wrapper that counts the HTTP requests reaching the Quart app."""

    def __init__(self, app: Any) -> None:
        self.app = app
        self.paths: list[str] = []

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "http":
            self.paths.append(scope["path"])
        await self.app(scope, receive, send)


def _credentials(mode: str, tokens: dict[str, str], user: str) -> str:
    return f"Bearer {tokens[user]}" if mode == "token" else _basic(f"{user}:pw")


def _basic(value: str) -> str:
    return "Basic " + base64.b64encode(value.encode()).decode()


def _comparable(response: httpx.Response) -> tuple[int, bytes, dict[str, str]]:
    headers = {k: v for k, v in response.headers.items() if k not in IGNORED}
    body = response.content
    if response.status_code == 429:
        # Seconds left in the window: the two apps' answers may straddle a second's tick.
        assert 1 <= int(headers.pop("retry-after")) <= 60
        body = re.sub(rb"retry in \d+s", b"retry in Ns", body)
    return response.status_code, body, headers


def _credential_cases(mode: str, tokens: dict[str, str]) -> list[tuple[str, str | bytes]]:
    """(case, Authorization value) for the gate's refusals in this auth mode."""
    common: list[tuple[str, str | bytes]] = [
        ("unknown scheme", "Digest abc"),
        ("basic junk", "Basic !!!"),
        ("non-ascii credentials", "Bearer é".encode("latin-1")),
    ]
    if mode == "basic":
        return [
            *common,
            ("wrong password", _basic("alice:wrong")),
            ("unknown user", _basic("nobody:pw")),
            ("empty password", _basic("alice:")),
            ("no separator", _basic("alice")),
            ("a token on password auth", f"Bearer {tokens['alice']}"),
            ("lower-case scheme", _basic("alice:pw").replace("Basic", "basic")),
        ]
    return [
        *common,
        ("empty bearer", "Bearer"),
        ("junk bearer", "Bearer not.a.token"),
        ("forged", f"Bearer {tokens['forged']}"),
        ("expired", f"Bearer {tokens['expired']}"),
        ("revoked", f"Bearer {tokens['revoked']}"),
        ("gone user", f"Bearer {tokens['gone']}"),
        ("basic token form", _basic(f"{tokens['alice']}:")),
        ("basic token with a password", _basic(f"{tokens['alice']}:x")),
        ("password on token auth", _basic("alice:pw")),
        ("lower-case scheme", f"bearer {tokens['alice']}"),
    ]


def _cases(
    mode: str, tokens: dict[str, str], todo: int, other: int, tag: str
) -> list[tuple[str, dict]]:
    item = f"/api/v1.0/todos/{todo}"
    mine = {"Authorization": _credentials(mode, tokens, "alice")}
    cases: list[tuple[str, dict]] = [("no credentials", {"path": item, "headers": {}})]
    cases += [
        (name, {"path": item, "headers": {"Authorization": value}})
        for name, value in _credential_cases(mode, tokens)
    ]
    cases += [
        ("own todo", {"path": item, "headers": mine}),
        (
            "lower-case scheme",
            {"path": item, "headers": {"Authorization": f"bearer {tokens['alice']}"}},
        ),
        ("another user's todo", {"path": f"/api/v1.0/todos/{other}", "headers": mine}),
        ("no such todo", {"path": f"/api/v1.0/todos/{other + 1000}", "headers": mine}),
        ("largest id", {"path": "/api/v1.0/todos/9223372036854775807", "headers": mine}),
        ("id too large", {"path": "/api/v1.0/todos/9223372036854775808", "headers": mine}),
        ("id zero", {"path": "/api/v1.0/todos/0", "headers": mine}),
        ("leading zero", {"path": f"/api/v1.0/todos/0{todo}", "headers": mine}),
        (
            "percent-encoded id",
            {"path": f"/api/v1.0/todos/%3{str(todo)[0]}{str(todo)[1:]}", "headers": mine},
        ),
        ("query string", {"path": f"{item}?x=1", "headers": mine}),
        ("trailing slash", {"path": f"{item}/", "headers": mine}),
        ("host with default port", {"path": item, "headers": {**mine, "Host": "Todo.Example:80"}}),
        ("host with a port", {"path": item, "headers": {**mine, "Host": "todo.example:8080"}}),
        ("host with junk", {"path": item, "headers": {**mine, "Host": "a<b>"}}),
        ("If-None-Match current", {"path": item, "headers": {**mine, "If-None-Match": f'"{tag}"'}}),
        ("If-None-Match weak", {"path": item, "headers": {**mine, "If-None-Match": f'W/"{tag}"'}}),
        ("If-None-Match star", {"path": item, "headers": {**mine, "If-None-Match": "*"}}),
        (
            "If-None-Match list with star",
            {"path": item, "headers": {**mine, "If-None-Match": '"x", *'}},
        ),
        ("If-None-Match other", {"path": item, "headers": {**mine, "If-None-Match": '"1-0000"'}}),
        ("If-None-Match junk", {"path": item, "headers": {**mine, "If-None-Match": "garbage"}}),
        ("If-None-Match empty", {"path": item, "headers": {**mine, "If-None-Match": ""}}),
        ("If-Match current", {"path": item, "headers": {**mine, "If-Match": f'"{tag}"'}}),
        ("If-Match star", {"path": item, "headers": {**mine, "If-Match": "*"}}),
        ("If-Match weak", {"path": item, "headers": {**mine, "If-Match": f'W/"{tag}"'}}),
        ("If-Match other", {"path": item, "headers": {**mine, "If-Match": '"1-0000"'}}),
        (
            "If-Match and If-None-Match",
            {
                "path": item,
                "headers": {**mine, "If-Match": f'"{tag}"', "If-None-Match": f'"{tag}"'},
            },
        ),
        (
            "another user's todo, If-None-Match *",
            {"path": f"/api/v1.0/todos/{other}", "headers": {**mine, "If-None-Match": "*"}},
        ),
    ]
    cases += _list_cases(mine, tokens, todo)
    busy = {"Authorization": _credentials(mode, tokens, "busy")}
    cases += [(f"busy {n}", {"path": item, "headers": busy}) for n in range(LIMIT + 2)]
    cases += [(f"busy list {n}", {"path": "/api/v1.0/todos/", "headers": busy}) for n in range(2)]
    return cases


def _list_cases(mine: dict[str, str], tokens: dict[str, str], todo: int) -> list[tuple[str, dict]]:
    """The list, paged every way the query allows and does not (alice has 4 todos from `todo`)."""
    listed = "/api/v1.0/todos/"
    queries = {
        "list": "",
        "list page 2 of 1 each": "?page=2&per_page=1",
        "list last page by number": "?page=4&per_page=1",
        "list past the end": "?page=9&per_page=1",
        "list after a cursor": f"?per_page=2&after={todo}",
        "list before a cursor": f"?page=2&per_page=2&before={todo + 3}",
        "list between cursors": f"?after={todo}&before={todo + 3}",
        "list page zero": "?page=0",
        "list page not a number": "?page=abc",
        "list page blank": "?page=",
        "list page fullwidth digit": "?page=%EF%BC%91",
        "list page percent junk": "?page=%ZZ",
        "list page with a NUL": "?page=1%00",
        "list page twice": "?page=2&page=1&per_page=1",
        "list per_page over the cap": "?per_page=100000",
        "list per_page huge": "?per_page=99999999999999999999999",
        "list unknown parameter": "?x=1&page=1",
        "list plus and semicolons": "?page=1;per_page=2&per_page=+2",
        "list percent-encoded name": "?%70age=2&per_page=1",
    }
    cases = [(name, {"path": listed + query, "headers": mine}) for name, query in queries.items()]
    return [
        *cases,
        ("list without the slash", {"path": listed.rstrip("/"), "headers": mine}),
        ("list without credentials", {"path": listed, "headers": {}}),
        (
            "list revoked",
            {"path": listed, "headers": {"Authorization": f"Bearer {tokens['revoked']}"}},
        ),
        ("list If-None-Match star", {"path": listed, "headers": {**mine, "If-None-Match": "*"}}),
        ("list If-Match other", {"path": listed, "headers": {**mine, "If-Match": '"0000"'}}),
        ("list If-Match star", {"path": listed, "headers": {**mine, "If-Match": "*"}}),
        ("list host with a port", {"path": listed, "headers": {**mine, "Host": "t.example:81"}}),
    ]


@pytest.mark.parametrize(
    ("backend", "mode"),
    [("sqlite", "token"), ("postgres", "token"), ("postgres", "basic")],
)
async def test_the_fast_route_answers_as_quart_does(
    backend: str,
    mode: str,
    databases: DatabaseFactory,
    redis_url: str,
    request: pytest.FixtureRequest,
) -> None:
    if backend == "postgres":
        request.getfixturevalue("postgres")
    url = await asyncio.to_thread(databases.create, backend)
    prefixes = [f"todo-test-{uuid.uuid4().hex[:8]}:" for _ in range(2)]
    apps = []
    for prefix in prefixes:
        settings = Settings(
            database_url=url,
            use_token_auth=mode == "token",
            use_rate_limits=True,
            rate_limit=f"{LIMIT}/60s",  # type: ignore[arg-type]
            redis_url=redis_url,
            redis_key_prefix=prefix,
            secret_key="s" * 64,
        )
        apps.append(create_app(settings))
    fast_app, quart_app = apps
    fast = fast_layer(fast_app)
    watched = QuartCalls(fast.app)
    fast.app = watched
    # The other app without its fast route: every request reaches Quart.
    quart_layer = fast_layer(quart_app)
    parent = quart_app.asgi_app
    while parent.app is not quart_layer:
        parent = parent.app
    parent.app = quart_layer.app

    users = {}
    for name in ("alice", "bob", "busy", "revoked", "gone"):
        users[name] = await asyncio.to_thread(add_user, url, name, "pw")
    secret = "s" * 64
    tokens = {name: issue_token(secret, user_id, 600) for name, user_id in users.items()}
    tokens["forged"] = issue_token("f" * 64, users["alice"], 600)
    tokens["expired"] = issue_token(secret, users["alice"], -10)
    todo = await insert_todo(url, users["alice"])
    for _ in range(3):  # pages to turn
        await insert_todo(url, users["alice"])
    other = await insert_todo(url, users["bob"])
    tag = todo_tag(todo, 1)
    try:
        async with served(fast_app) as fast_url, served(quart_app) as quart_url:
            await _revoke(url, users["revoked"], users["gone"])
            watched.paths.clear()
            answers: dict[str, list[Any]] = {"fast": [], "quart": []}
            async with (
                local_http.async_client(base_url=fast_url) as fast,
                local_http.async_client(base_url=quart_url) as quart,
            ):
                for name, case in _cases(mode, tokens, todo, other, tag):
                    headers = {
                        "Host": "todo.test",
                        "X-Request-ID": f"case-{len(answers['fast'])}",
                        **case["headers"],
                    }
                    for side, client in (("fast", fast), ("quart", quart)):
                        response = await client.get(case["path"], headers=headers)
                        answers[side].append((name, *_comparable(response)))
                        reset = response.headers.get("X-RateLimit-Reset")
                        if reset is not None:
                            assert abs(int(reset) - time.time()) <= 61
            fast_hits = hit_counter(fast_app)
            quart_hits = hit_counter(quart_app)
            assert fast_hits is not None and quart_hits is not None
        store = redis.Redis.from_url(redis_url)
        pending = [store.hgetall(f"{prefix}hits:pending") for prefix in prefixes]
    finally:
        client = redis.Redis.from_url(redis_url)
        for prefix in prefixes:
            keys = list(client.scan_iter(f"{prefix}*"))
            if keys:
                client.delete(*keys)

    for fast_answer, quart_answer in zip(answers["fast"], answers["quart"], strict=True):
        assert fast_answer == quart_answer, fast_answer[0]
    statuses = {answer[0]: answer[1] for answer in answers["fast"]}
    assert statuses["own todo"] == 200 and statuses["If-None-Match current"] == 304
    if mode == "token":
        assert statuses["revoked"] == statuses["gone user"] == 401
    else:
        assert statuses["wrong password"] == statuses["unknown user"] == 401
    assert statuses["another user's todo"] == 404 and statuses["If-Match other"] == 412
    assert statuses[f"busy {LIMIT + 1}"] == 429
    assert statuses["list"] == statuses["list page 2 of 1 each"] == 200
    assert statuses["list page zero"] == 400 and statuses["list If-None-Match star"] == 304
    # The fast app's Quart saw only what the fast route passes on (paths it does not serve).
    served_by_quart = {path.rstrip("/") for path in watched.paths}
    assert served_by_quart <= {
        "/api/v1.0/todos/9223372036854775808",
        "/api/v1.0/todos/0",
        f"/api/v1.0/todos/0{todo}",
        f"/api/v1.0/todos/{todo}",  # the trailing slash only
    }, watched.paths
    assert len(watched.paths) == 4
    assert pending[0] == pending[1] != {}


async def _revoke(url: str, revoked: int, gone: int) -> None:
    """A password change for one user (older tokens revoked), and another user deleted."""
    engine = create_engine(Settings(database_url=url))
    try:
        async with engine.begin() as connection:
            await connection.execute(
                text("UPDATE users SET password_version = password_version + 1 WHERE id = :id"),
                {"id": revoked},
            )
            await connection.execute(text("DELETE FROM users WHERE id = :id"), {"id": gone})
    finally:
        await engine.dispose()
