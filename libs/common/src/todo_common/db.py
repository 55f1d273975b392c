"""Async engines and sessions for SQLite (aiosqlite) and PostgreSQL (asyncpg), their time limits,
and telling "the database is unavailable" apart from a real error.

Time limits (PostgreSQL): connecting and waiting for a pooled connection take at most
TODO_DB_TIMEOUT. Engines made with a `statement_timeout` (the API's and the worker's) ask the server
to cancel any statement running longer, and give up on their own TODO_DB_TIMEOUT later, when the
server does not answer at all (hung, or a network that drops packets); such a connection is
discarded. Without one (migrations, todoctl) a statement may take 6x TODO_DB_TIMEOUT.

Pool liveness: instead of SQLAlchemy's `pool_pre_ping`, which pings on *every* checkout and so
doubles the round trips of a one-query request, a connection is pinged only when it has sat idle in
the pool longer than `IDLE_PING_AFTER` seconds. A busy API pays nothing; a connection that may have
been dropped by a restart or an idle timeout is checked (and replaced) before use. A connection
the driver already knows is closed (the server said goodbye: a restart, a crash) is replaced
without a round trip, so the first requests after a database restart do not fail on it.
"""

from __future__ import annotations

import contextlib
import time
from typing import Any

from sqlalchemy import event, exc
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Engine, ExceptionContext
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


def create_engine(
    settings: Settings, statement_timeout: float | None = None, **overrides: Any
) -> AsyncEngine:
    """Build the engine for `settings.database_url` with the options its driver needs.

    `statement_timeout` (seconds) bounds every statement, for processes that serve requests or
    tasks; leave it out for long one-off work such as migrations."""
    if settings.is_sqlite:
        options: dict[str, Any] = {
            "connect_args": {"timeout": settings.db_timeout},
        }
    else:
        server_settings = {"application_name": "todo"}
        if statement_timeout is None:
            command_timeout = settings.db_timeout * 6
        else:
            server_settings["statement_timeout"] = str(round(statement_timeout * 1000))
            # The server cancels first (the connection stays usable); this only fires when the
            # server cannot even do that.
            command_timeout = statement_timeout + settings.db_timeout
        options = {
            "pool_size": settings.db_pool_size,
            "max_overflow": settings.db_pool_size,
            "pool_timeout": settings.db_timeout,
            "pool_recycle": 1800,
            "connect_args": {
                "timeout": settings.db_timeout,
                "command_timeout": command_timeout,
                "server_settings": server_settings,
            },
        }
    options.update(overrides)
    engine = create_async_engine(settings.database_url, **options)
    if settings.is_sqlite:
        event.listen(engine.sync_engine, "connect", _sqlite_pragmas)
    else:
        _ping_idle_connections(engine.sync_engine)
        event.listen(engine.sync_engine, "handle_error", _network_errors_disconnect)
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
        is_closed = getattr(record.driver_connection, "is_closed", None)
        if is_closed is not None and is_closed():
            raise exc.DisconnectionError("the server closed this connection")
        last_used = record.info.get(_LAST_USED)
        if last_used is None or time.monotonic() - last_used < IDLE_PING_AFTER:
            return
        try:
            sync_engine.dialect.do_ping(dbapi)
        except Exception as error:
            # The pool discards this connection and retries the checkout with a fresh one.
            raise exc.DisconnectionError(str(error)) from error


def _network_errors_disconnect(context: ExceptionContext) -> None:
    """A socket error or our own timeout inside the driver leaves the connection in an unknown
    state (a query may still be running on it): discard it, and the pool's other connections
    too, rather than reuse them. asyncpg raises these as they are, not as DBAPI errors, so
    SQLAlchemy would otherwise keep the connection and roll back on it, waiting again."""
    if not isinstance(context.original_exception, OSError):  # TimeoutError is an OSError
        return
    context.is_disconnect = True
    # Close the socket now: SQLAlchemy would first try a polite close, which waits (2 s) for a
    # server that has just shown it does not answer.
    with contextlib.suppress(Exception):
        if context.connection is not None:
            driver_connection: Any = context.connection.connection.driver_connection
            driver_connection.terminate()


# SQLSTATE classes that mean "the server cannot serve now", not "this statement is wrong":
# 08 connection exception, 53 insufficient resources (too many connections, out of memory or
# disk), 57 operator intervention (shutdown, crash recovery, "cannot connect now", and a
# statement cancelled by statement_timeout).
_UNAVAILABLE_SQLSTATE_CLASSES = ("08", "53", "57")
_DRIVER_MODULES = ("asyncpg", "sqlalchemy", "aiosqlite", "sqlite3")


def database_unavailable(error: BaseException) -> bool:
    """Whether `error` means the database cannot be reached or cannot serve right now (a retry
    later may succeed), as opposed to a bug: a constraint violation, a missing table or a
    malformed statement all stay real errors."""
    for link in _causes(error):
        if isinstance(link, exc.TimeoutError | exc.DisconnectionError):
            return True  # no pooled connection came free in time / a connection was lost
        if isinstance(link, exc.DBAPIError) and link.connection_invalidated:
            return True
        sqlstate = getattr(link, "sqlstate", None)
        if isinstance(sqlstate, str) and sqlstate[:2] in _UNAVAILABLE_SQLSTATE_CLASSES:
            return True
        if str(getattr(link, "sqlite_errorname", "")).startswith("SQLITE_BUSY"):
            return True  # SQLite's lock stayed taken past busy_timeout
        if isinstance(link, OSError) and _raised_in_driver(link):
            return True  # connection refused or reset, DNS failure, connect/command timeout
    return False


def _causes(error: BaseException) -> list[BaseException]:
    """`error`, the exceptions it wraps (`orig`) and those it was raised from or while handling
    (a rollback failing after its connection broke surfaces as the second error), each once."""
    seen: list[BaseException] = []
    pending: list[BaseException | None] = [error]
    while pending and len(seen) < 16:
        link = pending.pop()
        if link is None or any(link is known for known in seen):
            continue
        seen.append(link)
        pending += [getattr(link, "orig", None), link.__cause__, link.__context__]
    return seen


def _raised_in_driver(error: BaseException) -> bool:
    """Whether the database layer was on the stack where `error` was raised (an OSError from
    anywhere else, such as Redis, is not the database's)."""
    trace = error.__traceback__
    while trace is not None:
        module = str(trace.tb_frame.f_globals.get("__name__", ""))
        if module.split(".", 1)[0] in _DRIVER_MODULES:
            return True
        trace = trace.tb_next
    return False
