"""Per-request bookkeeping in one pure-ASGI middleware: the X-Request-ID, timing, the HTTP metrics
and one access-log line, for every HTTP request the app answers (Quart's routes, any ASGI route in
front of Quart, and requests refused by `todo_api.framing`).

The request id is taken from the client when it looks sane (so a trace can cross services), else
generated; it is bound into structlog's context so every log line of the request carries it.
Metrics are labelled by route template, never by raw path, so their cardinality stays bounded.
Time runs from this middleware's entry to the end of the response body; the line is written and
the request counted just before its last byte is sent, so a client holding the response can
already find both. An app that raises still gets its line and its count, as 500; a request whose
client went away before its response was done (Quart then gives up on it; hypercorn cancels what
is left at shutdown) as 499, nginx's "client closed request", so clients leaving do not look like
server errors.

Inner layers tell the middleware about the request through the ASGI scope, which it reads as the
response ends: `set_route(scope, label)` names the route (Quart's rule, see `init_app`), and a
layer that refuses a request may put why under `REASON_KEY`. So every layer between this middleware
and the one setting a key must pass the scope on as it is, not a copy.
"""

from __future__ import annotations

import asyncio
import datetime
import functools
import io
import logging
import os
import re
import time
import uuid
from collections.abc import Callable
from typing import Any, cast

import orjson
import structlog
from hypercorn.typing import (
    ASGIFramework,
    ASGIReceiveCallable,
    ASGIReceiveEvent,
    ASGISendCallable,
    ASGISendEvent,
    Scope,
)
from prometheus_client import Counter, Histogram
from quart import Quart, request

from todo_common.logs import LogOutput, log_output

ACCESS_LOGGER = "todo_api.access"
log = structlog.get_logger(ACCESS_LOGGER)

# Scope keys: the route label and a refusal's reason (set by inner layers), the request id (here).
ROUTE_KEY = "todo.route"
REASON_KEY = "todo.reason"
REQUEST_ID_KEY = "todo.request_id"
UNMATCHED = "<unmatched>"
# The status logged and counted for a request cancelled before its response was done (nginx's).
CLIENT_CLOSED = 499

_SANE_REQUEST_ID = re.compile(rb"[A-Za-z0-9._:\-]{1,128}")
_NO_BODY = frozenset({204, 304})
_KNOWN_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
# A rule's variable with its converter: <id(max=9):todo_id> or <int:n>, labelled <todo_id>, <n>.
_CONVERTER = re.compile(r"<(?:[^<>]*:)?(\w+)>")

REQUESTS = Counter(
    "todo_http_requests_total", "HTTP requests handled.", ["method", "route", "status"]
)
LATENCY = Histogram(
    "todo_http_request_duration_seconds",
    "Time from the request's arrival in the app to the end of its response body, by method, "
    "route and status.",
    ["method", "route", "status"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
)


def set_route(scope: Scope, label: str) -> None:
    """Name the route that answers this request, for the metrics and the access line."""
    cast("dict[str, Any]", scope)[ROUTE_KEY] = label


def request_id_in(scope: Scope | dict[str, Any]) -> str | None:
    """The request id this middleware gave the request (to pass on, e.g. with a flush)."""
    request_id: str | None = cast("dict[str, Any]", scope).get(REQUEST_ID_KEY)
    return request_id


@functools.cache
def route_label(rule: str) -> str:
    """The label of a Werkzeug rule: its template without converters."""
    return _CONVERTER.sub(r"<\1>", rule)


def request_id_of(headers: list[tuple[bytes, bytes]] | Any) -> str:
    """The client's X-Request-ID if it is sane, else a new one."""
    for name, value in headers:
        if name == b"x-request-id":
            if _SANE_REQUEST_ID.fullmatch(value):
                return value.decode("ascii")
            break
    return uuid.uuid4().hex


def _length(headers: Any) -> int | None:
    """The response's Content-Length, or None without one (a streamed body)."""
    for name, value in headers:
        if name == b"content-length":  # ASGI response header names are lower case
            return int(value)
    return None


def _json_line_writer(output: LogOutput) -> Callable[[dict[str, Any]], None] | None:
    """A function writing an access event as one JSON line with the fields `todo_common.logs`'
    processors add, rendered by orjson straight to the log stream; None when the stream has no
    file descriptor. One write(2) per line on the unbuffered descriptor, so lines from concurrent
    tasks, and the logging module's own flushed lines, never interleave."""
    try:
        descriptor = output.stream.fileno()
    except (AttributeError, io.UnsupportedOperation):
        return None
    process = output.process
    options = orjson.OPT_UTC_Z | orjson.OPT_APPEND_NEWLINE

    def write(event: dict[str, Any]) -> None:
        event["level"] = "info"
        event["logger"] = ACCESS_LOGGER
        event["timestamp"] = datetime.datetime.now(datetime.UTC)
        event["process"] = process
        event["pid"] = os.getpid()
        line = orjson.dumps(event, option=options)
        while line:  # a write cut short (by a signal) is finished, not dropped
            line = line[os.write(descriptor, line) :]

    return write


class Observability:
    """ASGI middleware around the whole app; see the module docstring."""

    def __init__(self, app: ASGIFramework, metrics: bool = True) -> None:
        self.app = app
        self.metrics = metrics
        # One (counter, histogram) child per label set, so a request does no labels() lookup.
        self._children: dict[tuple[str, str, int], tuple[Any, Any]] = {}
        output = log_output()
        self._enabled = output is None or output.level <= logging.INFO
        # JSON lines skip structlog; on a console (or before logging is set up) structlog renders.
        self._write = (
            _json_line_writer(output)
            if output is not None and output.format == "json" and self._enabled
            else None
        )

    async def __call__(
        self, scope: Scope, receive: ASGIReceiveCallable, send: ASGISendCallable
    ) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        request_id = request_id_of(scope["headers"])
        http_scope = cast("dict[str, Any]", scope)
        http_scope[REQUEST_ID_KEY] = request_id
        structlog.contextvars.clear_contextvars()
        structlog.contextvars.bind_contextvars(request_id=request_id)
        id_header = (b"x-request-id", request_id.encode("ascii"))
        status = 500
        recorded = False
        client_left = False
        unsent: int | None = None  # body bytes the client still waits for, when it knows how many

        def record(final_status: int) -> None:
            nonlocal recorded
            recorded = True
            self._record(http_scope, final_status, time.perf_counter() - started, request_id)

        async def send_with_id(message: ASGISendEvent) -> None:
            # The line is written and the request counted just before the client can have the
            # whole response, so whoever holds a response can find its line and its count.
            nonlocal status, unsent
            if message["type"] == "http.response.start":
                status = message["status"]
                headers = message.get("headers", ())
                unsent = (
                    0 if status in _NO_BODY or http_scope["method"] == "HEAD" else _length(headers)
                )
                message = {**message, "headers": [*headers, id_header]}
                if unsent == 0:
                    record(status)
            elif message["type"] == "http.response.body" and not recorded:
                if unsent is not None:
                    unsent -= len(message.get("body", b""))
                if not message.get("more_body") or (unsent is not None and unsent <= 0):
                    record(status)
            await send(message)

        async def receive_watching() -> ASGIReceiveEvent:
            nonlocal client_left
            message = await receive()
            client_left = client_left or message["type"] == "http.disconnect"
            return message

        try:
            await self.app(scope, receive_watching, send_with_id)
        except asyncio.CancelledError:
            if not recorded:  # the client left, or shutdown ran out of time: not a server error
                record(CLIENT_CLOSED)
            raise
        except BaseException:
            if not recorded:
                record(500)
            raise
        if not recorded:
            # Quart gives up on a request whose client left (and sends nothing); without that,
            # an app that ends without a whole response gets a 500 from hypercorn.
            record(CLIENT_CLOSED if client_left else 500)

    def _record(self, scope: dict[str, Any], status: int, elapsed: float, request_id: str) -> None:
        route: str = scope.get(ROUTE_KEY, UNMATCHED)
        method = scope["method"]
        if self.metrics:
            folded = method if method in _KNOWN_METHODS else "OTHER"
            key = (folded, route, status)
            children = self._children.get(key)
            if children is None:
                labels = (folded, route, str(status))
                children = self._children[key] = (REQUESTS.labels(*labels), LATENCY.labels(*labels))
            children[0].inc()
            children[1].observe(elapsed)
        if not self._enabled:
            return
        client = scope.get("client")
        event: dict[str, Any] = {
            "method": method,
            "path": scope["path"],
            "route": route,
            "status": status,
            "duration_ms": round(elapsed * 1000, 2),
            "client": client[0] if client else None,
        }
        reason = scope.get(REASON_KEY)
        if reason is not None:
            event["reason"] = reason
        if self._write is None:
            log.info("request", **event)
        else:
            event["event"] = "request"
            event["request_id"] = request_id
            self._write(event)


async def _label_route() -> None:
    scope = request.scope
    if request.url_rule is not None:
        set_route(scope, route_label(request.url_rule.rule))


def init_app(app: Quart) -> None:
    """Label each request Quart routes with its rule. An app-level hook runs before any
    blueprint's, so the label is there even when the gate refuses the request."""
    app.before_request(_label_route)
