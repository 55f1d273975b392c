"""An answer as plain data (status, headers, body), and how each side sends one.

The GET of a todo is served twice over: by a pure-ASGI route in front of the app (`todo_api.hot`,
the fast way) and by its Quart blueprint (for the docs, tests and anything the fast route passes
on). Both build the same `Reply` with the same functions (the gate, the representation, the
conditional logic, the error bodies); only the last step differs: `as_response` for Quart,
`send_reply` for ASGI.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from hypercorn.typing import ASGISendCallable
from quart import Response

JSON = "application/json"


@dataclass(slots=True)
class Reply:
    status: int
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes = b""


def json_reply(body: bytes, status: int = 200, headers: dict[str, str] | None = None) -> Reply:
    return Reply(
        status, {"Content-Type": JSON, **headers} if headers else {"Content-Type": JSON}, body
    )


def as_response(reply: Reply) -> Response:
    response = Response(reply.body, status=reply.status, headers=reply.headers)
    if "Content-Type" not in reply.headers:
        # Quart gives every response a default text/html type; a 304 (or an empty answer)
        # describes no body of ours, and a 304 carries no Content-Length either.
        response.headers.pop("Content-Type", None)
    if reply.status == 304:
        response.headers.pop("Content-Length", None)
    return response


async def send_reply(reply: Reply, send: ASGISendCallable) -> None:
    headers = [
        (name.lower().encode("latin-1"), value.encode("latin-1"))
        for name, value in reply.headers.items()
    ]
    if reply.status != 304:
        headers.append((b"content-length", b"%d" % len(reply.body)))
    await send({"type": "http.response.start", "status": reply.status, "headers": headers})
    await send({"type": "http.response.body", "body": reply.body, "more_body": False})
