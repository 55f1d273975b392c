"""Refuse requests whose message framing is ambiguous, before the app sees them (RFC 9112 6.3).

A request with both Content-Length and Transfer-Encoding, several differing Content-Length
values, or a Transfer-Encoding whose final coding is not chunked can be framed one way by a proxy
in front of us and another way by us: the bytes one side takes for a body the other takes for a
second, smuggled request. Such a request gets a 400 JSON and `Connection: close`, so nothing sent
after it on the connection is read as a request. hypercorn's HTTP/1.1 parser (h11) already refuses
the last two; this check holds whatever server or protocol is in front of the app.
"""

from __future__ import annotations

from collections.abc import Iterable

import orjson
from hypercorn.typing import (
    ASGIFramework,
    ASGIReceiveCallable,
    ASGISendCallable,
    HTTPResponseBodyEvent,
    HTTPResponseStartEvent,
    Scope,
)

from todo_api.observability import REASON_KEY


def framing_problem(headers: Iterable[tuple[bytes, bytes]]) -> str | None:
    """Why a request with these headers cannot be framed unambiguously, or None."""
    lengths: list[bytes] = []
    codings: list[bytes] = []
    for name, value in headers:
        name = name.lower()
        if name == b"content-length":
            lengths.extend(part.strip() for part in value.split(b","))
        elif name == b"transfer-encoding":
            codings.extend(part.strip().lower() for part in value.split(b","))
    if lengths and codings:
        return "a request must not carry both Content-Length and Transfer-Encoding"
    if len(set(lengths)) > 1:
        return "a request must not carry differing Content-Length values"
    if lengths and not lengths[0].isdigit():
        return "Content-Length must be a decimal number"
    if codings and (codings[-1] != b"chunked" or codings.count(b"chunked") > 1):
        return "the final transfer coding must be chunked, and only that one"
    return None


def _refusal(message: str) -> tuple[list[tuple[bytes, bytes]], bytes]:
    # The shape of todo_api.errors.error_response, built without a request context.
    body = orjson.dumps(
        {
            "status": 400,
            "error": "bad request",
            "message": message,
            "type": "about:blank",
            "title": "Bad Request",
            "detail": message,
        }
    )
    headers = [
        (b"content-type", b"application/json"),
        (b"content-length", str(len(body)).encode()),
        (b"connection", b"close"),
    ]
    return headers, body


class RefuseAmbiguousFraming:
    """ASGI middleware: a request with ambiguous framing is answered 400 here and its connection
    closed; the app never runs and no byte of its body is read. The reason goes on the request's
    access line (`todo_api.observability`, the layer around this one)."""

    def __init__(self, app: ASGIFramework) -> None:
        self.app = app

    async def __call__(
        self, scope: Scope, receive: ASGIReceiveCallable, send: ASGISendCallable
    ) -> None:
        if scope["type"] != "http" or (problem := framing_problem(scope["headers"])) is None:
            await self.app(scope, receive, send)
            return
        scope[REASON_KEY] = problem  # type: ignore[literal-required]  # on the access line
        headers, body = _refusal(problem)
        await send(HTTPResponseStartEvent(type="http.response.start", status=400, headers=headers))
        await send(HTTPResponseBodyEvent(type="http.response.body", body=body, more_body=False))
