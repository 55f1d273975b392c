"""Leased connections (`todo_api.leases`) on a real PostgreSQL: lent again while sound, replaced
when their server session ended, a cancelled call's statement cancelled on the server, pinged
after an idle spell, a wait beyond the pool ending in `DatabaseUnavailable`, and the other ways
in still served when every lease is idle."""

from __future__ import annotations

import asyncio
import gc
import time
import warnings

import asyncpg
import pytest
from sqlalchemy import literal, select

from tests.api.test_pg_store import backend_pids, opened, url, wire  # noqa: F401 (fixtures)
from tests.api.test_store import PV, add_owner
from tests.support.instances import RoundTripCounter
from tests.support.servers import POSTGRES_ADMIN_DSN, POSTGRES_PORT
from todo_api import leases
from todo_common.exceptions import DatabaseUnavailable


async def _count(database, owner: int) -> int:  # type: ignore[no-untyped-def]
    async with database.store() as store:
        return await store.count_todos(owner_id=owner, password_version=PV)


async def test_a_lease_is_lent_again_on_the_same_server_session(url: str) -> None:  # noqa: F811
    database = await opened(url, db_pool_size=2)
    try:
        owner = await add_owner(database)
        first = await backend_pids(url)
        for _ in range(20):
            assert await _count(database, owner) == 0
        assert database.connections_in_use == 0
        assert await backend_pids(url) == first
    finally:
        await database.close()
    assert await backend_pids(url) == set()  # closing gave every connection back and closed it


async def test_a_lease_whose_session_ended_while_idle_is_replaced(url: str) -> None:  # noqa: F811
    database = await opened(url, db_pool_size=1)
    try:
        owner = await add_owner(database)
        (before,) = await backend_pids(url)
        admin = await asyncpg.connect(POSTGRES_ADMIN_DSN)
        try:
            await admin.execute("SELECT pg_terminate_backend($1)", before)
        finally:
            await admin.close()
        await asyncio.sleep(0.2)  # the driver sees the socket close
        assert await _count(database, owner) == 0  # not a 503: the dead lease was not lent
        after = await backend_pids(url)
    finally:
        await database.close()
    assert len(after) == 1 and before not in after


async def test_a_call_cancelled_mid_statement_has_the_server_cancel_it(
    url: str,  # noqa: F811
) -> None:
    database = await opened(url, db_pool_size=1)
    try:
        owner = await add_owner(database)
        before = await backend_pids(url)

        async def slow() -> None:
            async with database.store() as store:
                await store._connection.execute("SELECT pg_sleep(30)")  # type: ignore[attr-defined]

        task = asyncio.create_task(slow())
        await asyncio.sleep(0.3)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        started = time.monotonic()
        assert await _count(database, owner) == 0
        assert time.monotonic() - started < 2  # not queued behind the cancelled statement
        after = await backend_pids(url)
        admin = await asyncpg.connect(POSTGRES_ADMIN_DSN)
        try:
            sleeping = await admin.fetchval(
                "SELECT count(*) FROM pg_stat_activity WHERE query LIKE 'SELECT pg_sleep%'"
            )
        finally:
            await admin.close()
    finally:
        await database.close()
    assert after == before and sleeping == 0  # the same session, no statement left running


async def test_a_lease_idle_past_the_ping_interval_is_pinged_first(
    url: str,  # noqa: F811
    wire: RoundTripCounter,  # noqa: F811
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    database = await opened(url.replace(f":{POSTGRES_PORT}/", f":{wire.port}/"), db_pool_size=1)
    try:
        owner = await add_owner(database)
        await _count(database, owner)  # prepared
        before = wire.round_trips
        await _count(database, owner)
        fresh = wire.round_trips - before
        monkeypatch.setattr(leases, "IDLE_PING_AFTER", 0.0)
        before = wire.round_trips
        await _count(database, owner)
        idle = wire.round_trips - before
    finally:
        await database.close()
    assert (fresh, idle) == (1, 2)


async def test_a_wait_beyond_the_pool_is_unavailable_after_the_timeout(
    url: str,  # noqa: F811
) -> None:
    database = await opened(url, db_pool_size=1, db_timeout=0.3)
    try:
        owner = await add_owner(database)
        async with database.store():
            started = time.monotonic()
            with pytest.raises(DatabaseUnavailable, match="no database connection came free"):
                await _count(database, owner)
            assert 0.25 < time.monotonic() - started < 2
        assert await _count(database, owner) == 0
    finally:
        await database.close()


async def test_the_other_ways_in_are_served_while_every_lease_is_idle(
    url: str,  # noqa: F811
) -> None:
    database = await opened(url, db_pool_size=1, db_timeout=0.5)
    try:
        owner = await add_owner(database)
        assert await _count(database, owner) == 0  # the pool's one connection is now a lease
        async with database.connection() as connection:
            assert (await connection.exec_driver_sql("SELECT 1")).scalar() == 1
        async with database.transaction() as session:
            assert (await session.execute(select(literal(1)))).scalar() == 1
        await database.ping()
        assert await _count(database, owner) == 0
    finally:
        await database.close()


async def test_a_call_cancelled_while_its_idle_lease_is_pinged_loses_no_connection(
    url: str,  # noqa: F811
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The caller gives up (a client hangs up, /readyz's timeout) while `_take` pings an idle
    lease: the lease must not vanish with the caller, still checked out of SQLAlchemy's pool
    (the pool's slot lost until the garbage collector finds it, and then only with a warning)."""
    database = await opened(url, db_pool_size=1, db_timeout=1)
    try:
        owner = await add_owner(database)
        assert await _count(database, owner) == 0  # the pool's one connection is now a lease
        monkeypatch.setattr(leases, "IDLE_PING_AFTER", 0.0)  # every lease is pinged first
        task = asyncio.create_task(_count(database, owner))
        await asyncio.sleep(0)  # the task has sent the ping and waits for its answer
        task.cancel()
        # Kept, as a logged or chained exception keeps it for a while.
        with pytest.raises(asyncio.CancelledError) as cancelled:
            await task
        assert database.connections_in_use == 0
        assert await _count(database, owner) == 0  # not "QueuePool limit ... reached"
        del cancelled, task
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            gc.collect()
    finally:
        await database.close()
    assert not [w for w in caught if "garbage collector" in str(w.message)]
    assert await backend_pids(url) == set()
