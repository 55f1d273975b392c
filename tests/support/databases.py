"""Throwaway databases and `todo-api` servers shared by the tests, and the rule that a missing
service fails the run under CI=true (and is skipped, with the reason, elsewhere)."""

from __future__ import annotations

import asyncio
import os
import socket
import uuid
from pathlib import Path

import asyncpg
import pytest

from tests.support.servers import (
    POSTGRES_ADMIN_DSN,
    POSTGRES_HOST,
    POSTGRES_PORT,
    REDIS_URL,
    ApiServer,
    delete_keys,
    new_key_prefix,
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
                "TODO_REDIS_KEY_PREFIX": new_key_prefix(),
                **settings,
            }
            server = start_api(env, self.folder)
            self.servers[key] = server
        return server

    def stop_all(self) -> None:
        for server in self.servers.values():
            server.stop()
            if server.env.get("TODO_REDIS_URL") == REDIS_URL:  # the shared Redis: tidy it
                delete_keys(REDIS_URL, server.env["TODO_REDIS_KEY_PREFIX"])
