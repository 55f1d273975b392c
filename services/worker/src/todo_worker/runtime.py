"""One event loop, one database engine and one Redis client per worker process.

Celery runs tasks synchronously; our data layer is async. Running each task with `asyncio.run`
over a shared pool breaks (connections bound to a dead loop), so every worker process (each prefork
child, or the solo worker itself) opens its own loop and resources once, runs every task on that
loop, and closes them when the process shuts down.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Coroutine
from typing import Any, TypeVar

import redis.asyncio as aioredis
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from todo_common.db import create_engine, create_sessionmaker
from todo_common.settings import Settings

T = TypeVar("T")

# A flush needs one connection; a second covers a cleanup running in the same child.
POOL_SIZE = 2


class Runtime:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.pid = os.getpid()
        self.loop = asyncio.new_event_loop()
        self.engine: AsyncEngine = create_engine(
            settings,
            statement_timeout=settings.db_statement_timeout,
            pool_size=POOL_SIZE,
            max_overflow=0,
        )
        self.sessions: async_sessionmaker[AsyncSession] = create_sessionmaker(self.engine)
        self.redis: aioredis.Redis | None = (
            aioredis.Redis.from_url(
                settings.redis_url,
                socket_timeout=5,
                socket_connect_timeout=5,
                health_check_interval=30,
                decode_responses=True,
            )
            if settings.redis_url
            else None
        )

    def run(self, coroutine: Coroutine[Any, Any, T], deadline: float | None = None) -> T:
        """Run `coroutine` on this process's loop, cancelled (cleanly, inside the loop: its
        transaction rolls back, its connection returns) if it outlives `deadline` seconds."""
        return self.loop.run_until_complete(asyncio.wait_for(coroutine, deadline))

    def close(self) -> None:
        self.run(self.engine.dispose())
        if self.redis is not None:
            self.run(self.redis.aclose())
        self.loop.close()


_current: Runtime | None = None


def open_runtime(settings: Settings) -> Runtime:
    """This process's runtime, opened on first use (a forked child never reuses its parent's)."""
    global _current
    if _current is None or _current.pid != os.getpid():
        _current = Runtime(settings)
    return _current


def close_runtime() -> None:
    global _current
    if _current is not None and _current.pid == os.getpid():
        _current.close()
    _current = None
