"""Bring the database schema to the newest migration, safely from many processes at once, or
wait for someone else to.

Used by `todoctl migrate` / `todoctl createdb` and by the tests. On PostgreSQL a transaction-level
advisory lock, taken in the one transaction the migrations run in, serializes concurrent runs
(several pods starting together); the second run finds the schema current and does nothing. Being
transaction-level, it works through PgBouncer in transaction mode too. `todoctl
wait-for-migrations` (the pods' init container when the migrations Job is not a hook) only reads
the revision: it never migrates.
"""

from __future__ import annotations

import asyncio
import time

import structlog
from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Connection, text
from sqlalchemy.ext.asyncio import AsyncEngine

from todo_common.db import create_engine, translate_database_errors
from todo_common.exceptions import DatabaseUnavailable, SchemaNotReady
from todo_common.settings import Settings

log = structlog.get_logger(__name__)

# Any constant shared by every todoctl; "todo" in ASCII.
ADVISORY_LOCK_KEY = 0x746F646F


def alembic_config() -> Config:
    config = Config()
    config.set_main_option("script_location", "todo_common:migrations")
    return config


def head_revision() -> str | None:
    return ScriptDirectory.from_config(alembic_config()).get_current_head()


def current_revision(connection: Connection) -> str | None:
    return MigrationContext.configure(connection).get_current_revision()


async def wait_for_database(engine: AsyncEngine, wait: float) -> None:
    """Retry connecting while the database cannot serve, for up to `wait` seconds; then raise
    `DatabaseUnavailable`. A real error (a wrong password, no such database) is raised at once:
    waiting would not mend it."""
    deadline = time.monotonic() + wait
    delay = 0.25
    while True:
        try:
            async with translate_database_errors(), engine.connect() as connection:
                await connection.execute(text("SELECT 1"))
            return
        except DatabaseUnavailable as error:
            if time.monotonic() >= deadline:
                raise DatabaseUnavailable(
                    f"database not reachable after {wait:g}s: {error}"
                ) from error
            log.info("waiting for the database", error=str(error), retry_in=delay)
            await asyncio.sleep(delay)
            delay = min(delay * 2, 2.0)


def _upgrade(connection: Connection) -> tuple[str | None, str | None]:
    before = current_revision(connection)
    config = alembic_config()
    config.attributes["connection"] = connection
    command.upgrade(config, "head")
    return before, current_revision(connection)


async def upgrade_database(settings: Settings, wait: float = 0) -> tuple[str | None, str | None]:
    """Upgrade to head; returns the revisions before and after. Raises `DatabaseUnavailable`
    when the database cannot serve (after waiting up to `wait` seconds for it to answer)."""
    engine = create_engine(settings)
    try:
        await wait_for_database(engine, wait)
        async with translate_database_errors(), engine.connect() as connection:
            if connection.dialect.name == "postgresql":
                # Held by the transaction the migrations run in, and released by its commit or
                # rollback: a session-level lock would outlive us behind PgBouncer in
                # transaction mode (the unlock may reach another server connection).
                await connection.execute(
                    text("SELECT pg_advisory_xact_lock(:key)"), {"key": ADVISORY_LOCK_KEY}
                )
            before, after = await connection.run_sync(_upgrade)
            await connection.commit()
    finally:
        await engine.dispose()
    return before, after  # todoctl says what happened, in one line


async def wait_for_head(settings: Settings, wait: float) -> str:
    """Poll the database until its revision is the code's head; return the head. Only reads:
    nothing is created or migrated. An unreachable database or another revision is waited on, for
    up to `wait` seconds; then `SchemaNotReady` says what was seen last. A real error (a wrong
    password, no such database) is raised at once: waiting would not mend it."""
    head = head_revision()
    engine = create_engine(settings)
    deadline = time.monotonic() + wait
    delay = 0.25
    logged = None
    try:
        while True:
            try:
                async with translate_database_errors(), engine.connect() as connection:
                    current = await connection.run_sync(current_revision)
                if current == head:
                    return str(head)
                seen = f"schema at {current or 'empty'}, code needs {head}"
            except DatabaseUnavailable as error:
                seen = f"database unreachable ({error})"
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise SchemaNotReady(f"{seen}; gave up after {wait:g}s")
            if seen != logged:  # one line per change, not one per poll
                log.info("waiting for migrations", seen=seen)
                logged = seen
            await asyncio.sleep(min(delay, remaining))
            delay = min(delay * 2, 2.0)
    finally:
        await engine.dispose()
