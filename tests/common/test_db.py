"""Engines (SQLite pragmas, PostgreSQL connections that survive being dropped) and the boundary
that turns driver errors into `DatabaseUnavailable`, on errors real servers raise."""

from __future__ import annotations

import asyncio
import sqlite3
import time
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import asyncpg
import pytest
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError, OperationalError
from sqlalchemy.ext.asyncio import AsyncEngine

from tests.support.instances import PostgresCluster, postgres_binary
from tests.support.servers import (
    POSTGRES_ADMIN_DSN,
    POSTGRES_HOST,
    POSTGRES_PORT,
    free_port,
    need_program,
)
from todo_common import db
from todo_common.exceptions import DatabaseUnavailable
from todo_common.settings import Settings


def test_sqlite_runs_wal_with_foreign_keys(databases) -> None:  # type: ignore[no-untyped-def]
    url = databases.create("sqlite")

    async def pragmas() -> tuple[str, int]:
        engine = db.create_engine(Settings(database_url=url))
        try:
            async with engine.connect() as connection:
                mode = (await connection.execute(text("PRAGMA journal_mode"))).scalar_one()
                keys = (await connection.execute(text("PRAGMA foreign_keys"))).scalar_one()
                return mode, keys
        finally:
            await engine.dispose()

    assert asyncio.run(pragmas()) == ("wal", 1)


def test_idle_postgres_connection_is_replaced_after_the_server_drops_it(
    postgres: str,
    databases,
    monkeypatch: pytest.MonkeyPatch,  # type: ignore[no-untyped-def]
) -> None:
    url = databases.create("postgres")
    name = url.rsplit("/", 1)[1]

    async def scenario() -> int:
        engine = db.create_engine(Settings(database_url=url))
        try:
            async with engine.connect() as connection:
                await connection.execute(text("SELECT 1"))
            admin = await asyncpg.connect(POSTGRES_ADMIN_DSN)
            await admin.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = $1", name
            )
            await admin.close()
            monkeypatch.setattr(db, "IDLE_PING_AFTER", 0.0)
            async with engine.connect() as connection:
                return int((await connection.execute(text("SELECT 41 + 1"))).scalar_one())
        finally:
            await engine.dispose()

    assert asyncio.run(scenario()) == 42


# The boundary: `translate_database_errors()` turns the errors the drivers really raise when the
# database cannot serve into one `DatabaseUnavailable`, and leaves every real error as it was.


async def _fail_on_postgres(
    statement: str | None, *, port: int = POSTGRES_PORT, **options: Any
) -> BaseException:
    """Run `statement` (None: take a second connection while holding one) inside the boundary
    on an engine with short limits; returns what left the block."""
    url = f"postgresql+asyncpg://postgres@{POSTGRES_HOST}:{port}/postgres"
    engine = db.create_engine(
        Settings(database_url=url, db_timeout=0.5), statement_timeout=0.3, **options
    )
    try:
        async with db.translate_database_errors(), engine.connect() as connection:
            if statement is None:
                async with engine.connect():
                    pass
            else:
                await connection.execute(text(statement))
    except Exception as error:
        return error
    finally:
        await engine.dispose()
    raise AssertionError(f"{statement!r} did not fail")


async def _fail_on_sqlite(url: str, statement: str) -> BaseException:
    engine = db.create_engine(Settings(database_url=url, db_timeout=0.1))
    try:
        async with db.translate_database_errors(), engine.connect() as connection:
            await connection.execute(text("PRAGMA busy_timeout=0"))  # fail now, not in 5 s
            await connection.execute(text(statement))
    except Exception as error:
        return error
    finally:
        await engine.dispose()
    raise AssertionError(f"{statement!r} did not fail")


@pytest.fixture
def locked_sqlite(tmp_path: Path) -> Iterator[str]:
    """A SQLite database whose write lock another connection holds."""
    path = tmp_path / "locked.sqlite3"
    holder = sqlite3.connect(path, isolation_level=None)
    holder.execute("CREATE TABLE t (x)")
    holder.execute("BEGIN IMMEDIATE")
    yield f"sqlite+aiosqlite:///{path}"
    holder.close()


UNAVAILABLE_ON_POSTGRES = {
    "statement timeout": ("SELECT pg_sleep(5)", {}),
    "connection terminated": ("SELECT pg_terminate_backend(pg_backend_pid())", {}),
    "pool timeout": (None, {"pool_size": 1, "max_overflow": 0}),
    "too many connections": ("DO $$ BEGIN RAISE too_many_connections; END $$", {}),
    "cannot connect now": ("DO $$ BEGIN RAISE cannot_connect_now; END $$", {}),
    "connection refused": ("SELECT 1", {}),  # on a free port: nothing listens
}
REAL_ERRORS_ON_POSTGRES = {
    "division by zero": "SELECT 1 / 0",
    "missing table": "SELECT * FROM nowhere",
    "syntax": "SELEC 1",
    "unique violation": "DO $$ BEGIN RAISE unique_violation; END $$",
    "permission": "DO $$ BEGIN RAISE insufficient_privilege; END $$",
}


@pytest.mark.parametrize("case", UNAVAILABLE_ON_POSTGRES)
def test_postgres_that_cannot_serve_is_database_unavailable(postgres: str, case: str) -> None:
    statement, options = UNAVAILABLE_ON_POSTGRES[case]
    if case == "connection refused":
        options = {"port": free_port()}
    error = asyncio.run(_fail_on_postgres(statement, **options))

    assert isinstance(error, DatabaseUnavailable), repr(error)
    assert error.__cause__ is not None  # the driver's error, for the log and the traceback
    assert str(error)


@pytest.mark.parametrize("case", REAL_ERRORS_ON_POSTGRES)
def test_real_postgres_errors_leave_untouched(postgres: str, case: str) -> None:
    error = asyncio.run(_fail_on_postgres(REAL_ERRORS_ON_POSTGRES[case]))

    assert isinstance(error, DBAPIError), repr(error)
    assert not isinstance(error, DatabaseUnavailable)


def test_sqlite_locked_is_database_unavailable(locked_sqlite: str) -> None:
    error = asyncio.run(_fail_on_sqlite(locked_sqlite, "INSERT INTO t VALUES (1)"))

    assert isinstance(error, DatabaseUnavailable), repr(error)
    assert "SQLITE_BUSY" in repr(error.__cause__.orig.sqlite_errorname)  # type: ignore[union-attr]


def test_sqlite_missing_table_leaves_untouched(tmp_path: Path) -> None:
    url = f"sqlite+aiosqlite:///{tmp_path / 'empty.sqlite3'}"
    error = asyncio.run(_fail_on_sqlite(url, "SELECT * FROM nowhere"))

    assert isinstance(error, OperationalError) and "no such table" in str(error), repr(error)


def test_errors_that_are_not_the_databases_leave_untouched(postgres: str) -> None:
    """The caller's own exceptions pass through, even one raised while handling an outage; a
    translated error is not wrapped twice; outside the block nothing is translated."""

    async def scenario() -> list[BaseException]:
        seen: list[BaseException] = []

        async def inside(action: Callable[[], Awaitable[None]]) -> None:
            try:
                async with db.translate_database_errors():
                    await action()
            except Exception as error:
                seen.append(error)

        async def value_error() -> None:
            raise ValueError("not the database")

        async def refused() -> None:
            await _raise(await _fail_on_postgres("SELECT 1", port=free_port()))

        async def handled_outage() -> None:
            try:
                await refused()
            except DatabaseUnavailable as error:
                raise KeyError("raised while handling an outage") from error

        await inside(value_error)
        await inside(handled_outage)
        await inside(refused)  # DatabaseUnavailable from an inner boundary
        return seen

    value_error, handled, nested = asyncio.run(scenario())
    assert type(value_error) is ValueError
    assert type(handled) is KeyError
    assert type(nested) is DatabaseUnavailable and not isinstance(
        nested.__cause__, DatabaseUnavailable
    )
    # Our own timeout, outside any block, stays a TimeoutError.
    with pytest.raises(TimeoutError):
        asyncio.run(asyncio.wait_for(asyncio.sleep(1), 0.01))


async def _raise(error: BaseException) -> None:
    raise error


@pytest.fixture
def cluster() -> Iterator[PostgresCluster]:
    need_program("initdb", postgres_binary("initdb"))
    need_program("pg_ctl", postgres_binary("pg_ctl"))
    cluster = PostgresCluster()
    try:
        cluster.start()
        yield cluster
    finally:
        cluster.destroy()


@pytest.mark.timeout(60)
@pytest.mark.parametrize("fault", ["fast", "immediate", "frozen"])
def test_a_stopped_killed_or_frozen_server_is_database_unavailable(
    cluster: PostgresCluster, fault: str
) -> None:
    """A pooled connection whose server went away (a clean stop, a crash, a hang), and then
    new connections to it: each use raises `DatabaseUnavailable` promptly, never a driver
    error, and the same engine works again once the server is back."""

    async def use(engine: AsyncEngine) -> int:
        async with db.translate_database_errors(), engine.connect() as connection:
            return int((await connection.execute(text("SELECT 1"))).scalar_one())

    async def scenario() -> list[object]:
        settings = Settings(database_url=cluster.url("postgres"), db_timeout=1)
        engine = db.create_engine(settings, statement_timeout=1)
        outcomes: list[object] = []
        try:
            assert await use(engine) == 1  # a connection now waits in the pool
            cluster.freeze() if fault == "frozen" else cluster.stop(fault)
            for _ in range(3):
                started = time.monotonic()
                try:
                    await use(engine)
                except Exception as error:
                    outcomes.append((type(error), time.monotonic() - started < 3.5))
            cluster.thaw() if fault == "frozen" else cluster.start()
            outcomes.append(await use(engine))
        finally:
            await engine.dispose()
        return outcomes

    assert asyncio.run(scenario()) == [(DatabaseUnavailable, True)] * 3 + [1]
