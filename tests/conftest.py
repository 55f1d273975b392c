"""Shared fixtures: real PostgreSQL and Redis, fresh databases, and real `todo-api` servers.

A test that needs a service it cannot reach is skipped with the reason, except under CI=true,
where it fails: CI must never pass by skipping.
"""

from __future__ import annotations

import asyncio
import os
import socket
import uuid
from collections.abc import Iterator
from pathlib import Path

import asyncpg
import pytest
import redis

from tests.stack import Stack
from tests.support import (
    POSTGRES_ADMIN_DSN,
    POSTGRES_HOST,
    POSTGRES_PORT,
    REDIS_URL,
    ApiServer,
    start_api,
)
from todo_common.migrate import upgrade_database
from todo_common.settings import Settings

IN_CI = os.environ.get("CI", "").lower() == "true"
BACKENDS = ("sqlite", "postgres")


def _reachable(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=1):
            return True
    except OSError:
        return False


def need(service: str, host: str, port: int) -> None:
    if _reachable(host, port):
        return
    reason = f"{service} is not reachable at {host}:{port}"
    if IN_CI:
        pytest.fail(f"{reason} (CI=true: a missing service is a failure)")
    pytest.skip(reason)


@pytest.fixture(scope="session")
def postgres() -> str:
    need("PostgreSQL", POSTGRES_HOST, POSTGRES_PORT)
    return POSTGRES_ADMIN_DSN


@pytest.fixture(scope="session")
def redis_url() -> str:
    need("Redis", "127.0.0.1", 6379)
    return REDIS_URL


async def _admin(statement: str) -> None:
    connection = await asyncpg.connect(POSTGRES_ADMIN_DSN)
    try:
        await connection.execute(statement)
    finally:
        await connection.close()


class DatabaseFactory:
    """Creates migrated, throwaway databases and drops them at the end."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.created: list[str] = []

    def create(self, backend: str, migrate: bool = True) -> str:
        if backend == "sqlite":
            url = f"sqlite+aiosqlite:///{self.folder / uuid.uuid4().hex}.sqlite3"
        else:
            name = f"todo_test_{uuid.uuid4().hex[:12]}"
            asyncio.run(_admin(f'CREATE DATABASE "{name}"'))
            self.created.append(name)
            url = f"postgresql+asyncpg://postgres@{POSTGRES_HOST}:{POSTGRES_PORT}/{name}"
        if migrate:
            asyncio.run(upgrade_database(Settings(database_url=url)))
        return url

    def drop_all(self) -> None:
        for name in self.created:
            asyncio.run(_admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


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


class ServerPool:
    """Starts one `todo-api` per (backend, configuration) and reuses it across tests.

    Tests stay independent because each makes its own users: todos are visible only to their
    owner, and each server has its own database and Redis key prefix.
    """

    def __init__(self, databases: DatabaseFactory, folder: Path) -> None:
        self.databases = databases
        self.folder = folder
        self.servers: dict[tuple[str, tuple[tuple[str, str], ...]], ApiServer] = {}

    def get(self, backend: str, **settings: str) -> ApiServer:
        key = (backend, tuple(sorted(settings.items())))
        server = self.servers.get(key)
        if server is None or server.process.poll() is not None:
            env = {
                "TODO_DATABASE_URL": self.databases.create(backend),
                "TODO_REDIS_KEY_PREFIX": f"todo-test-{uuid.uuid4().hex[:8]}:",
                **settings,
            }
            server = start_api(env, self.folder)
            self.servers[key] = server
        return server

    def stop_all(self) -> None:
        for server in self.servers.values():
            server.stop()


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
    prefix = f"todo-test-{uuid.uuid4().hex[:8]}:"
    yield prefix
    client = redis.Redis.from_url(redis_url)
    keys = list(client.scan_iter(f"{prefix}*"))
    if keys:
        client.delete(*keys)
    client.close()


@pytest.fixture
def stack(
    postgres: str, databases: DatabaseFactory, redis_url: str, tmp_path: Path
) -> Iterator[Stack]:
    """A `todo-api` on PostgreSQL with hit counting on, which workers and schedulers can join."""
    prefix = f"todo-test-{uuid.uuid4().hex[:8]}:"
    env = {
        "TODO_DATABASE_URL": databases.create("postgres"),
        "TODO_REDIS_URL": redis_url,
        "TODO_REDIS_KEY_PREFIX": prefix,
        "TODO_STATE_DIR": str(tmp_path / "state"),
    }
    stack = Stack(start_api(env, tmp_path), env, tmp_path)
    yield stack
    for service in stack.services:
        service.kill()
    stack.api.stop()
    client = redis.Redis.from_url(redis_url)
    keys = list(client.scan_iter(f"{prefix}*"))
    if keys:
        client.delete(*keys)
    client.close()
