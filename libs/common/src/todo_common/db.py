"""Async engines and sessions for SQLite (aiosqlite) and PostgreSQL (asyncpg).

Pool liveness: instead of SQLAlchemy's `pool_pre_ping`, which pings on *every* checkout and so
doubles the round trips of a one-query request, a connection is pinged only when it has sat idle in
the pool longer than `IDLE_PING_AFTER` seconds. A busy API pays nothing; a connection that may have
been dropped by a restart or an idle timeout is checked (and replaced) before use.
"""

from __future__ import annotations

import time
from typing import Any

from sqlalchemy import event, exc
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Engine
from sqlalchemy.ext.asyncio import (
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)
from sqlalchemy.pool import ConnectionPoolEntry, PoolProxiedConnection

from todo_common.settings import Settings

IDLE_PING_AFTER = 10.0
_LAST_USED = "todo_last_used"


def create_engine(settings: Settings, **overrides: Any) -> AsyncEngine:
    """Build the engine for `settings.database_url` with the options its driver needs."""
    if settings.is_sqlite:
        options: dict[str, Any] = {
            "connect_args": {"timeout": settings.db_timeout},
        }
    else:
        options = {
            "pool_size": settings.db_pool_size,
            "max_overflow": settings.db_pool_size,
            "pool_timeout": settings.db_timeout,
            "pool_recycle": 1800,
            "connect_args": {
                "timeout": settings.db_timeout,
                "command_timeout": settings.db_timeout * 6,
                "server_settings": {"application_name": "todo"},
            },
        }
    options.update(overrides)
    engine = create_async_engine(settings.database_url, **options)
    if settings.is_sqlite:
        event.listen(engine.sync_engine, "connect", _sqlite_pragmas)
    else:
        _ping_idle_connections(engine.sync_engine)
    return engine


def create_sessionmaker(engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    return async_sessionmaker(engine, expire_on_commit=False)


def dialect_insert(session: AsyncSession) -> Any:
    """The session's dialect's INSERT construct, which knows ON CONFLICT (upserts)."""
    if session.get_bind().dialect.name == "postgresql":
        return postgresql.insert
    return sqlite.insert


def _sqlite_pragmas(dbapi_connection: Any, _record: ConnectionPoolEntry) -> None:
    # WAL lets readers run beside the writer; SQLite leaves foreign keys off unless asked.
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA busy_timeout=5000")
    cursor.close()


def _ping_idle_connections(sync_engine: Engine) -> None:
    @event.listens_for(sync_engine.pool, "checkin")
    def _checkin(_dbapi: Any, record: ConnectionPoolEntry) -> None:
        record.info[_LAST_USED] = time.monotonic()

    @event.listens_for(sync_engine.pool, "checkout")
    def _checkout(dbapi: Any, record: ConnectionPoolEntry, _proxy: PoolProxiedConnection) -> None:
        last_used = record.info.get(_LAST_USED)
        if last_used is None or time.monotonic() - last_used < IDLE_PING_AFTER:
            return
        try:
            sync_engine.dialect.do_ping(dbapi)
        except Exception as error:
            # The pool discards this connection and retries the checkout with a fresh one.
            raise exc.DisconnectionError(str(error)) from error
