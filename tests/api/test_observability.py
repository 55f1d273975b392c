"""Per-request bookkeeping (todo_api.observability): the X-Request-ID, the access line and the
HTTP metrics, on real `todo-api` processes (their stderr parsed line by line) and, for what a
server cannot be made to do (an app that raises), on the middleware alone."""

from __future__ import annotations

import asyncio
import datetime
import json
import re
import uuid
from pathlib import Path
from typing import Any

import httpx
import pytest
import structlog
from prometheus_client import REGISTRY

from tests.api.test_framing import exchange, request, responses
from tests.api.test_todos import TODOS
from tests.support import local_http
from tests.support.databases import DatabaseFactory, ServerPool
from tests.support.servers import ApiServer, scrape, start_api, wait_until
from todo_api.observability import Observability, request_id_of, route_label, set_route

ACCESS_FIELDS = {
    "event",
    "method",
    "path",
    "route",
    "status",
    "duration_ms",
    "client",
    "request_id",
    "level",
    "logger",
    "timestamp",
    "process",
    "pid",
}
ITEM_ROUTE = "/api/v1.0/todos/<todo_id>"


@pytest.fixture
def sqlite_api(servers: ServerPool) -> ApiServer:
    # The bookkeeping does not depend on the database: one backend is enough.
    return servers.get("sqlite")


def access_lines(server: ApiServer, request_id: str) -> list[dict[str, Any]]:
    """The access lines of the request with this id, once the server has written them."""

    def lines() -> list[dict[str, Any]]:
        return [
            record
            for record in server.records()
            if record.get("event") == "request" and record.get("request_id") == request_id
        ]

    wait_until(lambda: bool(lines()), timeout=5)
    return lines()


# --- the request id ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "offered",
    ["trace-7.obs", "a", "A:b_c-d.e", "x" * 128, "0123456789abcdef" * 8],
)
def test_a_sane_request_id_is_echoed_and_logged(sqlite_api: ApiServer, offered: str) -> None:
    offered = offered if len(offered) > 20 else f"{offered}-{uuid.uuid4().hex[:8]}"
    response = local_http.get(f"{sqlite_api.url}/healthz", headers={"X-Request-ID": offered})

    assert response.headers["X-Request-ID"] == offered
    (line,) = access_lines(sqlite_api, offered)
    assert line["path"] == "/healthz"


@pytest.mark.parametrize(
    "hostile",
    [
        pytest.param(b"", id="empty"),
        pytest.param(b"x" * 129, id="too-long"),
        pytest.param(b"bad id", id="space"),
        pytest.param(b"a\tb", id="tab"),
        pytest.param(b'a"b', id="quote"),
        pytest.param(b"a/b", id="slash"),
        pytest.param(b"a,b", id="comma"),
        pytest.param("caf\u00e9".encode("latin-1"), id="latin-1"),
        pytest.param("caf\u00e9".encode(), id="utf-8"),
        pytest.param(b"{}", id="braces"),
    ],
)
def test_a_hostile_request_id_is_replaced(sqlite_api: ApiServer, hostile: bytes) -> None:
    response = local_http.get(f"{sqlite_api.url}/healthz", headers=[(b"X-Request-ID", hostile)])

    replaced = response.headers["X-Request-ID"]
    assert re.fullmatch(r"[0-9a-f]{32}", replaced)
    assert replaced.encode() != hostile
    (line,) = access_lines(sqlite_api, replaced)
    assert line["status"] == 200


def test_every_response_carries_one_request_id_and_each_is_new(sqlite_api: ApiServer) -> None:
    with sqlite_api.client() as http:
        answered = [http.get(path) for path in ("/healthz", TODOS, "/nowhere", "/metrics")]
        answered.append(http.delete("/healthz"))  # 405 from routing

    assert [r.status_code for r in answered] == [200, 401, 404, 200, 405]
    ids = [r.headers.get_list("X-Request-ID") for r in answered]
    assert all(len(one) == 1 for one in ids)
    assert len({one[0] for one in ids}) == len(ids)


def test_request_id_of_takes_the_first_header_only_if_sane() -> None:
    assert request_id_of([(b"x-request-id", b"abc"), (b"x-request-id", b"def")]) == "abc"
    assert request_id_of([(b"other", b"abc")]) != "abc"
    assert request_id_of([(b"x-request-id", b"abc\n")]) != "abc\n"


# --- the access line ---------------------------------------------------------------------------


def test_the_access_line_has_todays_fields(sqlite_api: ApiServer) -> None:
    name, password = sqlite_api.add_user()
    request_id = uuid.uuid4().hex
    with sqlite_api.client(auth=(name, password)) as http:
        location = http.post(TODOS, json={"name": "n", "task": "t"}).headers["Location"]
        todo_path = httpx.URL(location).path
        http.get(todo_path, headers={"X-Request-ID": request_id}).raise_for_status()

    (line,) = access_lines(sqlite_api, request_id)
    assert set(line) == ACCESS_FIELDS
    assert line["event"] == "request"
    assert line["level"] == "info"
    assert line["logger"] == "todo_api.access"
    assert line["process"] == "api"
    assert isinstance(line["pid"], int)
    assert (line["method"], line["path"], line["route"]) == ("GET", todo_path, ITEM_ROUTE)
    assert line["status"] == 200
    assert isinstance(line["duration_ms"], float | int) and line["duration_ms"] >= 0
    assert line["client"] == "127.0.0.1"
    assert line["timestamp"].endswith("Z")
    stamp = datetime.datetime.fromisoformat(line["timestamp"])
    assert abs(datetime.datetime.now(datetime.UTC) - stamp) < datetime.timedelta(minutes=1)


def test_a_framing_refusal_gets_one_access_line_with_its_reason(sqlite_api: ApiServer) -> None:
    request_id = f"smuggle-{uuid.uuid4().hex}"
    head = (
        f"POST {TODOS} HTTP/1.1\nHost: x\nX-Request-ID: {request_id}\n"
        "Content-Length: 5\nTransfer-Encoding: chunked\n"
    )
    ((status, headers, _),) = responses(exchange(sqlite_api, request(head, b"0\r\n\r\n")))

    assert status == 400
    assert headers["x-request-id"] == request_id
    (line,) = access_lines(sqlite_api, request_id)
    assert set(line) == ACCESS_FIELDS | {"reason"}
    assert (line["status"], line["route"], line["path"]) == (400, "<unmatched>", TODOS)
    assert "Content-Length and Transfer-Encoding" in line["reason"]
    assert not [r for r in sqlite_api.records() if r.get("event") == "request refused"]


def test_no_access_line_below_info(servers: ServerPool) -> None:
    quiet = servers.get("sqlite", TODO_LOG_LEVEL="warning")
    request_id = uuid.uuid4().hex
    with quiet.client() as http:
        assert http.get(TODOS, headers={"X-Request-ID": request_id}).status_code == 401
        assert http.get("/healthz").headers["X-Request-ID"]
        for _ in range(20):
            http.get("/healthz")

    assert not [r for r in quiet.records() if r.get("event") == "request"]
    assert scrape(quiet.url, "todo_http_requests_total", route="/healthz") >= 20


def test_lines_from_50_concurrent_requests_never_interleave(
    databases: DatabaseFactory, tmp_path: Path
) -> None:
    # Two workers writing long lines (a long path and request id) would show any interleaving.
    server = start_api({"TODO_DATABASE_URL": databases.create("sqlite")}, tmp_path, workers=2)
    prefix = uuid.uuid4().hex[:8]
    ids = [f"{prefix}-{number:03d}-" + "x" * 100 for number in range(50)]
    long_path = "/nowhere/" + "p" * 2000

    async def send_all() -> list[httpx.Response]:
        async with local_http.async_client(base_url=server.url, timeout=30) as http:
            return await asyncio.gather(
                *(http.get(long_path, headers={"X-Request-ID": one}) for one in ids)
            )

    try:
        answered = asyncio.run(send_all())

        def all_written() -> bool:
            return sum(prefix in line for line in server.log().splitlines()) >= len(ids)

        assert wait_until(all_written, timeout=10)
    finally:
        server.stop()
    assert {r.status_code for r in answered} == {404}
    ours = [line for line in server.log().splitlines() if prefix in line]
    records = [json.loads(line) for line in ours]  # each line is one whole JSON document
    assert sorted(r["request_id"] for r in records) == ids
    assert all(r["path"] == long_path for r in records)


# --- the metrics -------------------------------------------------------------------------------


def test_the_todo_item_route_is_labelled_by_its_template(sqlite_api: ApiServer) -> None:
    with sqlite_api.client(auth=sqlite_api.add_user()) as http:
        location = http.post(TODOS, json={"name": "n", "task": "t"}).headers["Location"]
        for _ in range(3):
            http.get(location).raise_for_status()
        text = http.get("/metrics").text

    assert scrape(sqlite_api.url, "todo_http_requests_total", route=ITEM_ROUTE, status="200") >= 3
    series = [line for line in text.splitlines() if line.startswith("todo_http_")]
    assert series
    assert not [line for line in series if "(max=" in line or httpx.URL(location).path in line]


def test_unknown_methods_are_counted_as_other(sqlite_api: ApiServer) -> None:
    method = f"BREW{uuid.uuid4().hex[:6].upper()}"
    with sqlite_api.client() as http:
        http.request(method, "/healthz")
        text = http.get("/metrics").text

    assert method not in text
    assert scrape(sqlite_api.url, "todo_http_requests_total", method="OTHER") >= 1


def test_metrics_off_leaves_no_http_series(servers: ServerPool) -> None:
    server = servers.get("sqlite", TODO_HTTP_METRICS="false")
    with server.client() as http:
        for path in ("/healthz", TODOS, "/nowhere"):
            http.get(path)
        text = http.get("/metrics").text

    samples = [line for line in text.splitlines() if line.startswith("todo_http_")]
    assert samples == []


@pytest.mark.parametrize(
    ("rule", "label"),
    [
        ("/api/v1.0/todos/<id(max=9223372036854775807):todo_id>", ITEM_ROUTE),
        ("/api/v1.0/todos/", "/api/v1.0/todos/"),
        ("/docs/assets/<path:filename>", "/docs/assets/<filename>"),
        ("/a/<name>/b/<int:n>", "/a/<name>/b/<n>"),
    ],
)
def test_route_labels_leave_converters_out(rule: str, label: str) -> None:
    assert route_label(rule) == label


# --- the middleware alone ----------------------------------------------------------------------


async def _call(app: Any, path: str = "/") -> list[dict[str, Any]]:
    scope = {
        "type": "http",
        "method": "GET",
        "path": path,
        "headers": [],
        "client": ("192.0.2.1", 1234),
    }
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    await app(scope, receive, send)
    return sent


async def _answer(send: Any, status: int = 200) -> None:
    await send({"type": "http.response.start", "status": status, "headers": []})
    await send({"type": "http.response.body", "body": b"{}", "more_body": False})


async def test_an_app_that_raises_still_gets_its_line_with_500() -> None:
    async def broken(scope: Any, receive: Any, send: Any) -> None:
        set_route(scope, "/broken")
        raise RuntimeError("boom")

    with structlog.testing.capture_logs() as logs, pytest.raises(RuntimeError, match="boom"):
        await _call(Observability(broken))

    (line,) = [entry for entry in logs if entry["event"] == "request"]
    assert (line["status"], line["route"], line["client"]) == (500, "/broken", "192.0.2.1")
    labels = {"method": "GET", "route": "/broken", "status": "500"}
    assert REGISTRY.get_sample_value("todo_http_requests_total", labels) == 1


async def test_a_request_cancelled_before_its_response_is_499_not_a_server_error() -> None:
    started = asyncio.Event()

    async def waiting(scope: Any, receive: Any, send: Any) -> None:
        set_route(scope, "/waiting")
        started.set()
        await asyncio.Event().wait()

    with structlog.testing.capture_logs() as logs:
        call = asyncio.create_task(_call(Observability(waiting)))
        await started.wait()
        call.cancel()
        with pytest.raises(asyncio.CancelledError):
            await call

    (line,) = logs
    assert (line["status"], line["route"]) == (499, "/waiting")
    labels = {"method": "GET", "route": "/waiting", "status": "499"}
    assert REGISTRY.get_sample_value("todo_http_requests_total", labels) == 1


async def test_an_app_giving_up_on_a_client_that_left_is_499() -> None:
    async def gives_up(scope: Any, receive: Any, send: Any) -> None:
        # What Quart does when http.disconnect arrives before its handler answered.
        while (await receive())["type"] != "http.disconnect":
            pass

    messages = iter([{"type": "http.request", "body": b""}, {"type": "http.disconnect"}])

    async def receive() -> Any:
        return next(messages)

    async def send(message: Any) -> None:
        raise AssertionError(f"nothing is sent to a client that left: {message}")

    scope = {"type": "http", "method": "GET", "path": "/", "headers": [], "client": None}
    with structlog.testing.capture_logs() as logs:
        await Observability(gives_up, metrics=False)(scope, receive, send)

    (line,) = logs
    assert line["status"] == 499


async def test_a_route_in_front_of_quart_labels_itself_and_gets_the_request_id() -> None:
    async def hot(scope: Any, receive: Any, send: Any) -> None:
        set_route(scope, "/hot/<todo_id>")
        await _answer(send)

    with structlog.testing.capture_logs() as logs:
        sent = await _call(Observability(hot), "/hot/7")

    (start, _) = sent
    (name, request_id) = start["headers"][-1]
    assert name == b"x-request-id" and re.fullmatch(rb"[0-9a-f]{32}", request_id)
    (line,) = logs
    assert (line["route"], line["path"], line["status"]) == ("/hot/<todo_id>", "/hot/7", 200)
    labels = {"method": "GET", "route": "/hot/<todo_id>", "status": "200"}
    assert REGISTRY.get_sample_value("todo_http_requests_total", labels) == 1


async def test_the_time_runs_to_the_end_of_the_body() -> None:
    async def slow_body(scope: Any, receive: Any, send: Any) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"{", "more_body": True})
        await asyncio.sleep(0.05)
        await send({"type": "http.response.body", "body": b"}", "more_body": False})

    with structlog.testing.capture_logs() as logs:
        await _call(Observability(slow_body, metrics=False))

    (line,) = logs
    assert line["duration_ms"] >= 50


async def test_the_line_is_written_before_the_client_can_have_the_whole_response() -> None:
    """With a Content-Length the client has the response at its last byte, not at the empty
    closing message Quart sends after it."""
    seen_at_end_of_body: list[int] = []

    async def quart_like(scope: Any, receive: Any, send: Any) -> None:
        headers = [(b"content-length", b"2")]
        await send({"type": "http.response.start", "status": 201, "headers": headers})
        await send({"type": "http.response.body", "body": b"{}", "more_body": True})
        await send({"type": "http.response.body", "body": b"", "more_body": False})

    with structlog.testing.capture_logs() as logs:
        app = Observability(quart_like, metrics=False)

        async def outer(scope: Any, receive: Any, send: Any) -> None:
            async def watching(message: dict[str, Any]) -> None:
                if message.get("body") == b"{}":
                    seen_at_end_of_body.append(len(logs))
                await send(message)

            await app(scope, receive, watching)

        await _call(outer)

    assert seen_at_end_of_body == [1]
    assert logs[0]["status"] == 201


async def test_context_does_not_leak_from_one_request_to_the_next() -> None:
    seen: list[dict[str, Any]] = []

    async def binding(scope: Any, receive: Any, send: Any) -> None:
        seen.append(structlog.contextvars.get_contextvars())
        structlog.contextvars.bind_contextvars(user="someone")
        await _answer(send)

    app = Observability(binding, metrics=False)
    with structlog.testing.capture_logs():
        await _call(app)
        await _call(app)  # on the same task, so the same context

    first, second = seen
    assert set(first) == set(second) == {"request_id"}
    assert first["request_id"] != second["request_id"]
