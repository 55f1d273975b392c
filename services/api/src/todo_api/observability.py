"""Per-request bookkeeping: the X-Request-ID, one access-log line, and the HTTP metrics.

The request id is taken from the client when it looks sane (so a trace can cross services), else
generated; it is bound into structlog's context so every log line of the request carries it.
Metrics are labelled by route template, never by raw path, so their cardinality stays bounded.
"""

from __future__ import annotations

import re
import time
import uuid

import structlog
from prometheus_client import Counter, Histogram
from quart import Quart, Response, g, request

log = structlog.get_logger("todo_api.access")

REQUEST_ID_HEADER = "X-Request-ID"
_SANE_REQUEST_ID = re.compile(r"^[A-Za-z0-9._:\-]{1,128}$")
_KNOWN_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})

REQUESTS = Counter(
    "todo_http_requests_total", "HTTP requests handled.", ["method", "route", "status"]
)
LATENCY = Histogram(
    "todo_http_request_duration_seconds",
    "Time from the first hook to the response, by method, route and status.",
    ["method", "route", "status"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
)


def request_id_from_client() -> str:
    offered = request.headers.get(REQUEST_ID_HEADER, "")
    return offered if _SANE_REQUEST_ID.match(offered) else uuid.uuid4().hex


async def begin_request() -> None:
    g.started = time.perf_counter()
    g.request_id = request_id_from_client()
    structlog.contextvars.clear_contextvars()
    structlog.contextvars.bind_contextvars(request_id=g.request_id)


async def finish_request(response: Response, metrics: bool = True) -> Response:
    response.headers[REQUEST_ID_HEADER] = g.get("request_id") or request_id_from_client()
    elapsed = time.perf_counter() - g.get("started", time.perf_counter())
    route = request.url_rule.rule if request.url_rule is not None else "<unmatched>"
    method = request.method if request.method in _KNOWN_METHODS else "OTHER"
    status = str(response.status_code)
    if metrics:
        REQUESTS.labels(method, route, status).inc()
        LATENCY.labels(method, route, status).observe(elapsed)
    log.info(
        "request",
        method=request.method,
        path=request.path,
        route=route,
        status=response.status_code,
        duration_ms=round(elapsed * 1000, 2),
        client=request.remote_addr,
    )
    return response


def init_app(app: Quart, metrics: bool = True) -> None:
    app.before_request(begin_request)
    if metrics:
        app.after_request(finish_request)
    else:

        async def finish_without_metrics(response: Response) -> Response:
            return await finish_request(response, metrics=False)

        app.after_request(finish_without_metrics)
