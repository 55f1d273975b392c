"""The PostgreSQL store on the wire: one round trip per call (counted by a proxy), prepared
statements off for PgBouncer (two round trips, none cached), a connection broken mid-call not
returned to the pool, and a pool that keeps its server sessions under bursts above its size."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import asyncpg
import pytest

from tests.api.test_store import PV, add_owner, add_todo
from tests.support.databases import DatabaseFactory
from tests.support.instances import RoundTripCounter
from tests.support.servers import POSTGRES_ADMIN_DSN, POSTGRES_PORT
from todo_api.resources import Database
from todo_api.store import Store, Window
from todo_common.exceptions import DatabaseUnavailable
from todo_common.settings import Settings


@pytest.fixture
async def url(postgres: str, databases: DatabaseFactory) -> str:
    return await asyncio.to_thread(databases.create, "postgres")


@pytest.fixture
async def wire() -> AsyncIterator[RoundTripCounter]:
    counter = RoundTripCounter(POSTGRES_PORT)
    await counter.start()
    yield counter
    await counter.stop()


async def opened(url: str, **settings: Any) -> Database:
    database = Database(Settings(database_url=url, **settings))
    await database.open()
    return database


def calls(todo_id: int) -> dict[str, Callable[[Store, int], Awaitable[Any]]]:
    return {
        "get_todo": lambda s, o: s.get_todo(owner_id=o, password_version=PV, todo_id=todo_id),
        "count_todos": lambda s, o: s.count_todos(owner_id=o, password_version=PV),
        "list_todo_ids": lambda s, o: s.list_todo_ids(
            owner_id=o, password_version=PV, window=Window(limit=10, after=todo_id - 1)
        ),
        "read_stats": lambda s, o: s.read_stats(owner_id=o, password_version=PV, top=5),
        "create_todo": lambda s, o: s.create_todo(
            owner_id=o, password_version=PV, name="n", task="t"
        ),
        "update_todo": lambda s, o: s.update_todo(
            owner_id=o, password_version=PV, todo_id=todo_id, name="n", task="t", versions="*"
        ),
    }


async def round_trips(
    database: Database, wire: RoundTripCounter, call: Callable[[Store], Awaitable[Any]]
) -> int:
    async with database.store() as store:
        before = wire.round_trips
        await call(store)
        return wire.round_trips - before


@pytest.mark.parametrize(("prepared", "expected"), [(True, 1), (False, 2)], ids=["on", "off"])
async def test_every_call_is_one_statement_and_with_prepared_statements_one_round_trip(
    url: str, wire: RoundTripCounter, prepared: bool, expected: int
) -> None:
    proxied = url.replace(f":{POSTGRES_PORT}/", f":{wire.port}/")
    database = await opened(proxied, db_pool_size=1, db_prepared_statements=prepared)
    try:
        owner = await add_owner(database)
        todo_id = await add_todo(database, owner)
        measured = {}
        for name, call in calls(todo_id).items():
            await round_trips(database, wire, lambda s, c=call: c(s, owner))  # warm: prepared
            measured[name] = await round_trips(database, wire, lambda s, c=call: c(s, owner))
        for doomed in (await add_todo(database, owner), await add_todo(database, owner)):
            measured["delete_todo"] = await round_trips(  # the first warms
                database,
                wire,
                lambda s, d=doomed: s.delete_todo(owner_id=owner, password_version=PV, todo_id=d),
            )
        async with database.store() as store:
            cached = len(store._connection._stmt_cache)  # type: ignore[attr-defined]
    finally:
        await database.close()

    assert measured == dict.fromkeys(measured, expected)
    assert (cached > 0) is prepared  # off: asyncpg keeps no named statement to collide on


async def backend_pids(url: str) -> set[int]:
    name = url.rsplit("/", 1)[1]
    admin = await asyncpg.connect(POSTGRES_ADMIN_DSN)
    try:
        rows = await admin.fetch(
            "SELECT pid FROM pg_stat_activity WHERE datname = $1 AND application_name = 'todo'",
            name,
        )
    finally:
        await admin.close()
    return {row["pid"] for row in rows}


async def test_bursts_above_the_pool_size_keep_the_same_server_sessions(url: str) -> None:
    size = 4
    database = await opened(url, db_pool_size=size)
    try:
        owner = await add_owner(database)
        todo_id = await add_todo(database, owner)

        async def request() -> None:
            async with database.store() as store:
                await store.get_todo(owner_id=owner, password_version=PV, todo_id=todo_id)
                await asyncio.sleep(0.01)  # hold the connection, as a slow request does

        seen = []
        for _ in range(5):
            await asyncio.gather(*(request() for _ in range(3 * size)))
            seen.append(await backend_pids(url))
    finally:
        await database.close()

    assert len(seen[0]) == size
    assert all(pids == seen[0] for pids in seen), seen


async def test_a_connection_broken_in_raw_use_is_not_pooled_again(url: str) -> None:
    database = await opened(url, db_pool_size=1)
    try:
        owner = await add_owner(database)
        (before,) = await backend_pids(url)
        admin = await asyncpg.connect(POSTGRES_ADMIN_DSN)
        try:
            with pytest.raises(DatabaseUnavailable):
                async with database.store() as store:
                    await admin.execute("SELECT pg_terminate_backend($1)", before)
                    await store.count_todos(owner_id=owner, password_version=PV)
        finally:
            await admin.close()
        async with database.store() as store:
            assert await store.count_todos(owner_id=owner, password_version=PV) == 0
        after = await backend_pids(url)
    finally:
        await database.close()

    assert len(after) == 1 and before not in after


async def test_a_statement_over_the_timeout_is_unavailable_and_the_connection_kept(
    url: str,
) -> None:
    database = await opened(url, db_pool_size=1, db_statement_timeout=0.2)
    try:
        owner = await add_owner(database)
        (before,) = await backend_pids(url)
        with pytest.raises(DatabaseUnavailable, match="QueryCanceledError"):
            async with database.store() as store:
                await store._connection.execute("SELECT pg_sleep(2)")  # type: ignore[attr-defined]
        async with database.store() as store:
            assert await store.count_todos(owner_id=owner, password_version=PV) == 0
        after = await backend_pids(url)
    finally:
        await database.close()

    assert after == {before}  # the server cancelled the statement; the session is fine
