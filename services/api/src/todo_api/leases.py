"""PostgreSQL connections lent to store calls without going back to SQLAlchemy's pool each time.

Why: a checkout from SQLAlchemy's async pool and its checkin cost about 200 us of Python per call
(three greenlet switches, the pool's events, the connection facades), measured as much as all
the rest of a GET on the fast route. So a connection is checked out of the engine's pool once,
and then lent to one store call at a time, as its raw asyncpg connection.

SQLAlchemy still owns every connection: it opens them, checks them on checkout, recycles and
discards them. At most `size` (the pool's size) leases exist, so a store call that finds all of
them busy waits here, in order, up to `timeout`, and never behind an idle lease in SQLAlchemy's
pool. A lease goes back to SQLAlchemy invalidated when its connection broke, and is pinged first
when it has been idle as long as the engine's own idle ping (`todo_common.db.IDLE_PING_AFTER`)
waits. Other ways to the pool (`Database.session()`, ...) first give the idle leases back.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass

import asyncpg
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from todo_common.db import IDLE_PING_AFTER, disconnected
from todo_common.exceptions import DatabaseUnavailable

# A lease older than this goes back to SQLAlchemy's pool, which recycles it when it is due.
_RETURN_AFTER_SECONDS = 600.0


@dataclass
class _Lease:
    connection: AsyncConnection  # checked out of the engine's pool
    raw: asyncpg.Connection
    taken_at: float
    used_at: float


class ConnectionLeases:
    def __init__(self, engine: AsyncEngine, *, size: int, timeout: float) -> None:
        self._engine = engine
        self._timeout = timeout
        self._slots = asyncio.Semaphore(size)
        self._idle: list[_Lease] = []  # the most recently used last: it is lent first
        self.in_use = 0

    @contextlib.asynccontextmanager
    async def lease(self) -> AsyncIterator[asyncpg.Connection]:
        """One connection for the block. A driver error that left it broken leaves as
        `DatabaseUnavailable`; other errors leave as they are, and the connection is lent
        again."""
        await self._wait_for_slot()
        try:
            lease = await self._take()
        except BaseException:
            self._slots.release()
            raise
        self.in_use += 1
        try:
            yield lease.raw
        except Exception as error:
            lost = disconnected(error, lease.raw)
            if lost is None:
                self._keep(lease)
                raise
            await self._discard(lease, error)
            raise lost from error
        except BaseException:
            # Cancelled: asyncpg asks the server to cancel the statement, and the connection's
            # next statement waits for that (or finds it closed, if the server did not answer).
            self._keep(lease)
            raise
        else:
            self._keep(lease)
        finally:
            self.in_use -= 1
            self._slots.release()

    async def give_back_idle(self) -> None:
        """Return every idle lease to SQLAlchemy's pool (before another way in checks one out
        there, and on close)."""
        while self._idle:
            await self._idle.pop().connection.close()

    async def _wait_for_slot(self) -> None:
        if not self._slots.locked():
            await self._slots.acquire()  # free: returns at once
            return
        try:
            async with asyncio.timeout(self._timeout):
                await self._slots.acquire()
        except TimeoutError:
            raise DatabaseUnavailable(
                f"no database connection came free in {self._timeout:g}s"
            ) from None

    async def _take(self) -> _Lease:
        while self._idle:
            lease = self._idle.pop()
            now = time.monotonic()
            if lease.raw.is_closed():
                await self._discard(lease, None)
            elif now - lease.taken_at > _RETURN_AFTER_SECONDS:
                await lease.connection.close()
            elif now - lease.used_at < IDLE_PING_AFTER or await self._answers(lease):
                return lease
        connection = await self._engine.connect()
        try:
            raw = (await connection.get_raw_connection()).driver_connection
        except BaseException:
            await connection.close()
            raise
        assert raw is not None  # checked out: the pool hands out live connections
        now = time.monotonic()
        return _Lease(connection, raw, now, now)

    async def _answers(self, lease: _Lease) -> bool:
        try:
            await lease.raw.execute("SELECT 1")
        except BaseException as error:
            # Broken, or its caller gave up mid-ping (a client hung up, /readyz's timeout):
            # either way it goes back to SQLAlchemy, invalidated. Out of `_idle` and not yet
            # lent, it would otherwise stay checked out of the pool, lost with the caller.
            await self._discard(lease, error)
            if not isinstance(error, Exception):
                raise
            return False
        return True

    def _keep(self, lease: _Lease) -> None:
        lease.used_at = time.monotonic()
        self._idle.append(lease)

    async def _discard(self, lease: _Lease, error: BaseException | None) -> None:
        lease.raw.terminate()
        try:
            await lease.connection.invalidate(error if isinstance(error, Exception) else None)
        finally:
            await lease.connection.close()
