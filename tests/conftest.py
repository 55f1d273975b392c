"""Shared fixtures: real PostgreSQL and Redis, fresh databases, and real `todo-api` servers.

The helpers behind them live in the `tests.support` package; tests import from there, never
from a conftest.

A test that needs a service it cannot reach is skipped with the reason, except under CI=true,
where it fails: CI must never pass by skipping.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.databases import BACKENDS, DatabaseFactory, ServerPool, need
from tests.support.servers import (
    POSTGRES_ADMIN_DSN,
    POSTGRES_HOST,
    POSTGRES_PORT,
    REDIS_URL,
    delete_keys,
    new_key_prefix,
)
from tests.support.stack import Stack, running_stack


@pytest.fixture(scope="session")
def postgres() -> str:
    need("PostgreSQL", POSTGRES_HOST, POSTGRES_PORT)
    return POSTGRES_ADMIN_DSN


@pytest.fixture(scope="session")
def redis_url() -> str:
    need("Redis", "127.0.0.1", 6379)
    return REDIS_URL


@pytest.fixture(scope="session")
def databases(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DatabaseFactory]:
    factory = DatabaseFactory(tmp_path_factory.mktemp("databases"))
    yield factory
    factory.drop_all()


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> str:
    if request.param == "postgres":
        request.getfixturevalue("postgres")
    return str(request.param)


@pytest.fixture
def database_url(backend: str, databases: DatabaseFactory) -> str:
    """A fresh, migrated database of the parametrized backend, for this test alone."""
    return databases.create(backend)


@pytest.fixture(scope="session")
def servers(
    databases: DatabaseFactory, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ServerPool]:
    pool = ServerPool(databases, tmp_path_factory.mktemp("servers"))
    yield pool
    pool.stop_all()


@pytest.fixture
def flush_redis_prefix(redis_url: str) -> Iterator[str]:
    """A Redis key prefix of this test's own, deleted afterwards."""
    prefix = new_key_prefix()
    yield prefix
    delete_keys(redis_url, prefix)


@pytest.fixture
def stack(
    postgres: str, databases: DatabaseFactory, redis_url: str, tmp_path: Path
) -> Iterator[Stack]:
    """A `todo-api` on PostgreSQL with hit counting on, which workers and schedulers can join."""
    with running_stack(databases.create("postgres"), redis_url, tmp_path) as stack:
        yield stack
