"""Process-wide resources of the app, opened before serving and closed after.

Each follows the extension pattern (`init_app` registers `before_serving` / `after_serving`), and
handlers reach them through `database(app)` / `settings_of(app)` (Redis: `todo_api.redis_client`).
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator

from quart import Quart
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, AsyncSession, async_sessionmaker

from todo_api.leases import ConnectionLeases
from todo_api.pg_store import PgStore
from todo_api.store import SqliteStore, Store
from todo_common.db import as_unavailable, create_engine, create_sessionmaker
from todo_common.settings import Settings

_SETTINGS = "todo.settings"
_DATABASE = "todo.database"
_REDIS = "todo.redis"


def attach_settings(app: Quart, settings: Settings) -> None:
    app.extensions[_SETTINGS] = settings


def settings_of(app: Quart) -> Settings:
    settings: Settings = app.extensions[_SETTINGS]
    return settings


class Database:
    """The API's engine and its boundary: every way in (`store()`, `connection()`, `session()`,
    `transaction()`, `ping()`) re-raises "the database cannot serve now" as
    `DatabaseUnavailable` (see `todo_common.db.translate_database_errors`), which the app
    answers with a 503. The try/except sits in the context manager itself, so the hot path pays
    nothing more."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._engine: AsyncEngine | None = None
        self._sessions: async_sessionmaker[AsyncSession] | None = None
        self._autocommit: AsyncEngine | None = None
        self._leases: ConnectionLeases | None = None

    def init_app(self, app: Quart) -> None:
        app.extensions[_DATABASE] = self
        app.before_serving(self.open)
        app.after_serving(self.close)

    async def open(self) -> None:
        self._engine = create_engine(
            self.settings, statement_timeout=self.settings.db_statement_timeout
        )
        self._sessions = create_sessionmaker(self._engine)
        # Reads run in autocommit: no BEGIN/ROLLBACK around a single SELECT, one round trip.
        self._autocommit = self._engine.execution_options(isolation_level="AUTOCOMMIT")
        if not self.settings.is_sqlite:
            self._leases = ConnectionLeases(
                self._engine, size=self.settings.db_pool_size, timeout=self.settings.db_timeout
            )

    async def close(self) -> None:
        if self._leases is not None:
            await self._leases.give_back_idle()
        if self._engine is not None:
            await self._engine.dispose()

    @property
    def connections_in_use(self) -> int:
        """Connections lent to store calls right now (PostgreSQL), or checked out (SQLite)."""
        if self._leases is not None:
            return self._leases.in_use
        return self._engine.sync_engine.pool.checkedout() if self._engine is not None else 0  # type: ignore[attr-defined]

    @contextlib.asynccontextmanager
    async def store(self) -> AsyncIterator[Store]:
        """The todo store on one connection: on PostgreSQL a leased raw asyncpg connection
        (`todo_api.leases`, `todo_api.pg_store`), on SQLite a pooled SQLAlchemy one
        (`todo_api.store.SqliteStore`). Hold only store calls in the block: an OSError inside
        it is taken to be the database's."""
        if self._engine is None:
            raise RuntimeError("the database is opened when the app starts serving")
        try:
            if self._leases is not None:
                async with self._leases.lease() as raw:
                    yield PgStore(raw)
                return
            async with self._engine.connect() as connection:
                yield SqliteStore(connection)
        except Exception as error:
            unavailable = as_unavailable(error)
            if unavailable is None:
                raise
            raise unavailable from error

    @contextlib.asynccontextmanager
    async def session(self) -> AsyncIterator[AsyncSession]:
        """An ORM session; begin a transaction on it, or use `transaction()`."""
        if self._sessions is None:
            raise RuntimeError("the database is opened when the app starts serving")
        if self._leases is not None:
            await self._leases.give_back_idle()  # they hold the pool's connections
        try:
            async with self._sessions() as session:
                yield session
        except Exception as error:
            unavailable = as_unavailable(error)
            if unavailable is None:
                raise
            raise unavailable from error

    @contextlib.asynccontextmanager
    async def connection(self) -> AsyncIterator[AsyncConnection]:
        """A pooled connection in autocommit for Core reads: no ORM session, one round trip per
        statement (the hot path)."""
        if self._autocommit is None:
            raise RuntimeError("the database is opened when the app starts serving")
        if self._leases is not None:
            await self._leases.give_back_idle()
        try:
            async with self._autocommit.connect() as connection:
                yield connection
        except Exception as error:
            unavailable = as_unavailable(error)
            if unavailable is None:
                raise
            raise unavailable from error

    @contextlib.asynccontextmanager
    async def transaction(self) -> AsyncIterator[AsyncSession]:
        """A session in a transaction, committed when the block ends (rolled back on an error);
        a failing commit is translated too, by `session()`."""
        async with self.session() as session, session.begin():
            yield session

    async def ping(self) -> None:
        async with self.store() as store:
            await store.ping()


def database(app: Quart) -> Database:
    db: Database = app.extensions[_DATABASE]
    return db
