"""Async engines and sessions for SQLite (aiosqlite) and PostgreSQL (asyncpg), their time limits,
and the one place driver errors become `DatabaseUnavailable`.

Translation: code holding a connection runs inside `translate_database_errors()` (the API's
`Database`, the worker's flush, todoctl). An error there that means "the database cannot serve
now" (unreachable, restarting, out of connections, too slow, SQLite locked) is re-raised as
`todo_common.exceptions.DatabaseUnavailable`; everything else leaves as the driver raised it.
Code above that boundary catches one exception, and never has to guess where an OSError came from.

Time limits (PostgreSQL): connecting and waiting for a pooled connection take at most
TODO_DB_TIMEOUT. Engines made with a `statement_timeout` (the API's and the worker's) ask the server
to cancel any statement running longer, and give up on their own TODO_DB_TIMEOUT later, when the
server does not answer at all (hung, or a network that drops packets); such a connection is
discarded. Without one (migrations, todoctl) a statement may take 6x TODO_DB_TIMEOUT. With
TODO_DB_PREPARED_STATEMENTS=false (PgBouncer in transaction mode) no session setting is sent at
connect: the server-side limit is then the database role's (`ALTER ROLE ... SET statement_timeout`),
and the client still gives up after TODO_DB_STATEMENT_TIMEOUT + TODO_DB_TIMEOUT.

Pool size (PostgreSQL): TODO_DB_POOL_SIZE connections per engine and no overflow, so a steady load
keeps the same server sessions (an overflow connection is closed when it comes back, which under
load above the pool size means a new session per request). Requests beyond the pool wait up to
TODO_DB_TIMEOUT for a connection to come free, then get `DatabaseUnavailable`.

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
import uuid
from collections.abc import AsyncIterator
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

from todo_common.exceptions import DatabaseUnavailable
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
            if settings.db_prepared_statements:
                # Not behind a transaction pooler: PgBouncer refuses this startup parameter
                # ("unsupported startup parameter"), and a session setting would not follow
                # the client to the next server connection anyway. There the server's own
                # setting (ALTER ROLE ... SET statement_timeout) takes its place.
                server_settings["statement_timeout"] = str(round(statement_timeout * 1000))
            # The server cancels first (the connection stays usable); this only fires when the
            # server cannot even do that, or has no statement_timeout of its own.
            command_timeout = statement_timeout + settings.db_timeout
        connect_args: dict[str, Any] = {
            "timeout": settings.db_timeout,
            "command_timeout": command_timeout,
            "server_settings": server_settings,
        }
        if not settings.db_prepared_statements:
            connect_args.update(_UNPREPARED)
        options = {
            # No overflow: an overflow connection is closed when it comes back, so load above
            # the pool size would open and close a server session per request. Beyond the
            # pool, requests wait (up to TODO_DB_TIMEOUT) for a connection to come free.
            "pool_size": settings.db_pool_size,
            "max_overflow": 0,
            "pool_timeout": settings.db_timeout,
            "pool_recycle": 1800,
            "connect_args": connect_args,
        }
    options.update(overrides)
    engine = create_async_engine(settings.database_url, **options)
    if settings.is_sqlite:
        event.listen(engine.sync_engine, "connect", _sqlite_pragmas)
    else:
        _ping_idle_connections(engine.sync_engine)
        event.listen(engine.sync_engine, "handle_error", _network_errors_disconnect)
    return engine


# TODO_DB_PREPARED_STATEMENTS=false, for PgBouncer in transaction mode: a statement prepared on
# one server connection cannot be used from another. asyncpg then sends unnamed statements, and
# SQLAlchemy's own `prepare()` calls (which it makes whatever the cache size) get unique names,
# so two clients sharing a server connection never collide ("... already exists").
_UNPREPARED: dict[str, Any] = {
    "statement_cache_size": 0,
    "prepared_statement_cache_size": 0,
    "prepared_statement_name_func": lambda: f"__asyncpg_{uuid.uuid4().hex}__",
}


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


def disconnected(error: Exception, driver_connection: Any) -> DatabaseUnavailable | None:
    """For an error raised by a raw driver connection used outside SQLAlchemy: the
    `DatabaseUnavailable` it stands for when it left that connection broken or in an unknown
    state (the caller must then invalidate it), else None. What `_network_errors_disconnect` and
    SQLAlchemy's disconnect detection decide for errors that go through SQLAlchemy."""
    sqlstate = getattr(error, "sqlstate", None)
    is_closed = getattr(driver_connection, "is_closed", None)
    if (
        isinstance(error, OSError)  # TimeoutError too: a query may still be running on it
        or (isinstance(sqlstate, str) and sqlstate.startswith("08"))  # connection exception
        or (is_closed is not None and is_closed())  # e.g. the server ended the session
    ):
        return DatabaseUnavailable(_describe(error))
    return None


# SQLSTATE classes that mean "the server cannot serve now", not "this statement is wrong":
# 08 connection exception, 53 insufficient resources (too many connections, out of memory or
# disk), 57 operator intervention (shutdown, crash recovery, "cannot connect now", and a
# statement cancelled by statement_timeout).
_UNAVAILABLE_SQLSTATE_CLASSES = ("08", "53", "57")
# How many errors raised while handling another (a rollback failing after its connection broke)
# are looked through for the outage underneath.
_CONTEXT_DEPTH = 3


@contextlib.asynccontextmanager
async def translate_database_errors() -> AsyncIterator[None]:
    """Around code that holds a database connection: an error meaning the database cannot
    serve now leaves as one `DatabaseUnavailable` (raised from the driver's error); real errors
    (constraint violations, missing tables, bad SQL) leave untouched.

    Only database code belongs in the block: an OSError raised inside it (connection refused
    or reset, DNS, the driver's own timeouts) is taken to be the database's. Hot paths that
    already are a context manager inline the same try/except with `as_unavailable`."""
    try:
        yield
    except Exception as error:
        unavailable = as_unavailable(error)
        if unavailable is None:
            raise
        raise unavailable from error


def as_unavailable(error: Exception) -> DatabaseUnavailable | None:
    """The `DatabaseUnavailable` that `error`, raised by database code, stands for, or None when
    it is a real error. Callers raise the result `from error`."""
    link: BaseException | None = error
    for _ in range(_CONTEXT_DEPTH):
        if link is None or isinstance(link, DatabaseUnavailable):
            return None  # translated already, further in
        if _cannot_serve(link):
            return DatabaseUnavailable(_describe(link))
        if not isinstance(link, exc.SQLAlchemyError):
            return None  # ours or the caller's (an APIError raised while handling an outage)
        link = link.__context__
    return None


def _cannot_serve(error: BaseException) -> bool:
    if isinstance(error, exc.TimeoutError | exc.DisconnectionError):
        return True  # no pooled connection came free in time / a connection was lost
    if isinstance(error, OSError):  # TimeoutError included: a connect or command timeout
        return True  # inside the block, so the database's: refused, reset, DNS, timed out
    if isinstance(error, exc.DBAPIError):
        if error.connection_invalidated:
            return True
        error = error.orig if error.orig is not None else error
    sqlstate = getattr(error, "sqlstate", None)  # asyncpg's, raw or adapted by SQLAlchemy
    if isinstance(sqlstate, str) and sqlstate[:2] in _UNAVAILABLE_SQLSTATE_CLASSES:
        return True
    # SQLite's lock stayed taken past busy_timeout (SQLITE_BUSY, SQLITE_BUSY_SNAPSHOT, ...).
    return str(getattr(error, "sqlite_errorname", "")).startswith("SQLITE_BUSY")


def _describe(error: BaseException) -> str:
    """The driver's error in one line, without SQLAlchemy's statement and help link."""
    if isinstance(error, exc.DBAPIError) and error.orig is not None:
        error = error.orig
    first_line = str(error).strip().split("\n", 1)[0]
    return f"{type(error).__name__}: {first_line}" if first_line else type(error).__name__
