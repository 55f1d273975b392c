"""The benchmark's ceiling: a bare Quart app answering a small constant JSON, served by hypercorn
with the same settings as `todo-api`. Every endpoint's figures are also reported as a ratio to
this one, measured in the same run on the same machine."""

from __future__ import annotations

from quart import Quart, Response

app = Quart("ceiling")
BODY = b'{"url":"http://127.0.0.1/api/v1.0/todos/1","name":"n","task":"t"}'


@app.get("/")
async def constant() -> Response:
    return Response(BODY, content_type="application/json")
