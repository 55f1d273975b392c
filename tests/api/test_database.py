"""The API's `Database` is the boundary for database errors: every way in raises
`DatabaseUnavailable` when the database cannot serve and leaves real errors alone, and the app
answers `DatabaseUnavailable` (and only it) with a 503 carrying Retry-After. In-process, on real
servers: the shared PostgreSQL, and a throwaway cluster to stop."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import AbstractAsyncContextManager
from typing import Any

import pytest
from quart import Quart
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError, IntegrityError

from tests.support.databases import DatabaseFactory
from tests.support.instances import PostgresCluster, postgres_binary
from tests.support.servers import POSTGRES_HOST, free_port, need_program
from todo_api.errors import ErrorReplies, register_error_handlers
from todo_api.resources import Database
from todo_common.exceptions import DatabaseUnavailable
from todo_common.settings import Settings

WAYS_IN: dict[str, Callable[[Database], AbstractAsyncContextManager[Any]]] = {
    "connection": Database.connection,
    "session": Database.session,
    "transaction": Database.transaction,
}


async def _opened(url: str) -> Database:
    database = Database(Settings(database_url=url, db_timeout=1, db_statement_timeout=1))
    await database.open()
    return database


async def _run(database: Database, way: str, statement: str) -> None:
    async with WAYS_IN[way](database) as handle:
        await handle.execute(text(statement))


@pytest.mark.parametrize("way", WAYS_IN)
def test_every_way_in_translates_a_refused_connection(postgres: str, way: str) -> None:
    async def scenario() -> None:
        url = f"postgresql+asyncpg://postgres@{POSTGRES_HOST}:{free_port()}/postgres"
        database = await _opened(url)
        try:
            with pytest.raises(DatabaseUnavailable) as caught:
                await _run(database, way, "SELECT 1")
            assert isinstance(caught.value.__cause__, ConnectionRefusedError)
            with pytest.raises(DatabaseUnavailable):
                await database.ping()
        finally:
            await database.close()

    asyncio.run(scenario())


@pytest.mark.parametrize("way", WAYS_IN)
def test_every_way_in_leaves_real_errors_alone(databases: DatabaseFactory, way: str) -> None:
    url = databases.create("postgres")

    async def scenario() -> None:
        database = await _opened(url)
        try:
            with pytest.raises(DBAPIError) as missing:
                await _run(database, way, "SELECT * FROM nowhere")
            with pytest.raises(IntegrityError):
                await _run(database, way, "INSERT INTO users (id) VALUES (NULL)")
            with pytest.raises(ZeroDivisionError):  # the caller's own error, inside the block
                async with WAYS_IN[way](database):
                    _ = 1 / 0
        finally:
            await database.close()
        assert not isinstance(missing.value, DatabaseUnavailable)

    asyncio.run(scenario())


def test_a_statement_cancelled_by_the_timeout_is_unavailable(databases: DatabaseFactory) -> None:
    url = databases.create("postgres")

    async def scenario() -> None:
        database = await _opened(url)
        try:
            with pytest.raises(DatabaseUnavailable):
                await _run(database, "connection", "SELECT pg_sleep(5)")
            await database.ping()  # the connection stays usable
        finally:
            await database.close()

    asyncio.run(scenario())


def test_a_failing_commit_is_translated(databases: DatabaseFactory) -> None:
    """The server goes away between the statement and the commit of `transaction()`."""

    url = databases.create("postgres")

    async def scenario() -> None:
        database = await _opened(url)
        try:
            with pytest.raises(DatabaseUnavailable):
                async with database.transaction() as session:
                    await session.execute(text("SELECT 1"))
                    # Ends this backend without an error on this statement's answer.
                    killer = await _opened(database.settings.database_url)
                    pid = (await session.execute(text("SELECT pg_backend_pid()"))).scalar_one()
                    async with killer.connection() as connection:
                        await connection.execute(text(f"SELECT pg_terminate_backend({pid})"))
                    await killer.close()
        finally:
            await database.close()

    asyncio.run(scenario())


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
def test_a_stopped_server_is_unavailable_then_served_again(cluster: PostgresCluster) -> None:
    async def scenario() -> None:
        database = await _opened(cluster.url("postgres"))
        try:
            await database.ping()
            cluster.stop("fast")
            for way in WAYS_IN:
                with pytest.raises(DatabaseUnavailable):
                    await _run(database, way, "SELECT 1")
            cluster.start()
            await database.ping()
        finally:
            await database.close()

    asyncio.run(scenario())


@pytest.fixture
async def app() -> AsyncIterator[Quart]:
    app = Quart(__name__)
    register_error_handlers(
        app, ErrorReplies(use_token_auth=False, on_revoked=lambda user_id: None)
    )

    @app.get("/unavailable")
    async def unavailable() -> str:
        raise DatabaseUnavailable("ConnectionRefusedError: test")

    @app.get("/oserror")
    async def oserror() -> str:
        raise ConnectionRefusedError("not the database: raised outside any boundary")

    yield app


async def test_database_unavailable_is_a_503_and_anything_else_a_500(app: Quart) -> None:
    client = app.test_client()

    unavailable = await client.get("/unavailable")
    assert unavailable.status_code == 503
    assert unavailable.headers["Retry-After"] == "5"
    assert (await unavailable.get_json())["error"] == "service unavailable"

    other = await client.get("/oserror")
    assert other.status_code == 500
    assert "Retry-After" not in other.headers
