"""Apps served in this process by a real hypercorn, and rows made without a request: for tests
that compare the fast route with Quart (each request spends rate limit windows, so setup must not
go through one app and not the other)."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Any

import httpx
from sqlalchemy import insert

from tests.support import local_http
from tests.support.servers import free_port
from todo_api.hot import FastTodoReads
from todo_common.db import create_engine
from todo_common.models import Todo, utcnow
from todo_common.settings import Settings


def fast_layer(app: Any) -> FastTodoReads:
    layer = app.asgi_app
    while not isinstance(layer, FastTodoReads):
        layer = layer.app
    return layer


@contextlib.asynccontextmanager
async def served(app: Any) -> AsyncIterator[str]:
    from hypercorn.asyncio import serve
    from hypercorn.config import Config

    port = free_port()
    config = Config()
    config.bind = [f"127.0.0.1:{port}"]
    config.accesslog = None
    stop = asyncio.Event()
    task = asyncio.create_task(serve(app, config, shutdown_trigger=stop.wait))  # type: ignore[arg-type]
    url = f"http://127.0.0.1:{port}"
    async with local_http.async_client() as probe:
        for _ in range(200):
            with contextlib.suppress(httpx.TransportError):
                if (await probe.get(f"{url}/healthz")).status_code == 200:
                    break
            await asyncio.sleep(0.05)
    try:
        yield url
    finally:
        stop.set()
        await task


async def insert_todo(url: str, owner_id: int) -> int:
    """A todo inserted directly: no request spends a window of one app and not the other's."""
    engine = create_engine(Settings(database_url=url))
    try:
        async with engine.begin() as connection:
            todo_id = await connection.scalar(
                insert(Todo)
                .values(owner_id=owner_id, name="n", task="t", created_at=utcnow(), version=1)
                .returning(Todo.id)
            )
    finally:
        await engine.dispose()
    return int(todo_id)
