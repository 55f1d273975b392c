"""Engines: SQLite pragmas, and PostgreSQL connections that survive being dropped."""

from __future__ import annotations

import asyncio

import asyncpg
import pytest
from sqlalchemy import text

from tests.support import POSTGRES_ADMIN_DSN
from todo_common import db
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
