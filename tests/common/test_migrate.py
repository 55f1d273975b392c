"""Migrations: from empty to head on both databases, idempotent, safe to run concurrently,
and working from an installed wheel (not only from the source tree); `todoctl wait-for-migrations`
waits for someone else's migration and never migrates itself."""

from __future__ import annotations

import asyncio
import subprocess
import time
import zipfile
from pathlib import Path

import pytest
from sqlalchemy import inspect, text

from tests.support.databases import DatabaseFactory
from tests.support.servers import BIN, clean_env
from todo_common.db import create_engine
from todo_common.migrate import head_revision, upgrade_database
from todo_common.settings import Settings

ROOT = Path(__file__).resolve().parents[2]


def _tables(url: str) -> set[str]:
    async def inspect_tables() -> set[str]:
        engine = create_engine(Settings(database_url=url))
        try:
            async with engine.connect() as connection:
                return set(await connection.run_sync(lambda c: inspect(c).get_table_names()))
        finally:
            await engine.dispose()

    return asyncio.run(inspect_tables())


def test_upgrade_creates_the_schema_once(backend: str, databases: DatabaseFactory) -> None:
    url = databases.create(backend, migrate=False)

    first = asyncio.run(upgrade_database(Settings(database_url=url)))
    second = asyncio.run(upgrade_database(Settings(database_url=url)))

    assert first == (None, head_revision())
    assert second == (head_revision(), head_revision())
    assert {"users", "todos", "alembic_version"} <= _tables(url)


def test_concurrent_migrate_commands_serialize(postgres: str, databases: DatabaseFactory) -> None:
    url = databases.create("postgres", migrate=False)
    runs = [
        subprocess.Popen(
            [str(BIN / "todoctl"), "migrate", "--wait", "10"],
            env=clean_env(TODO_DATABASE_URL=url),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(4)
    ]
    outputs = [run.communicate(timeout=60) for run in runs]

    assert [run.returncode for run in runs] == [0, 0, 0, 0], outputs
    stdout = [out for out, _ in outputs]
    assert sum("upgraded from empty" in out for out in stdout) == 1
    assert sum("already at" in out for out in stdout) == 3


def test_migrate_wait_gives_up_with_one_line() -> None:
    result = subprocess.run(
        [str(BIN / "todoctl"), "migrate", "--wait", "1"],
        env=clean_env(TODO_DATABASE_URL="postgresql+asyncpg://postgres@127.0.0.1:1/none"),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 1
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith("todoctl: database not reachable after 1s")


@pytest.mark.timeout(300)
def test_migrations_work_from_an_installed_wheel(tmp_path: Path) -> None:
    subprocess.run(
        ["uv", "build", "--wheel", "--package", "todo-common", "-o", str(tmp_path / "dist")],
        cwd=ROOT,
        check=True,
        capture_output=True,
    )
    wheel = next((tmp_path / "dist").glob("todo_common-*.whl"))
    names = zipfile.ZipFile(wheel).namelist()
    assert "todo_common/migrations/env.py" in names
    assert "todo_common/migrations/script.py.mako" in names
    assert any(name.startswith("todo_common/migrations/versions/0001") for name in names)

    venv = tmp_path / "venv"
    subprocess.run(["uv", "venv", "-q", str(venv)], check=True, capture_output=True)
    subprocess.run(
        ["uv", "pip", "install", "-q", "--python", str(venv / "bin" / "python"), str(wheel)],
        check=True,
        capture_output=True,
    )
    database = tmp_path / "from-wheel.sqlite3"
    result = subprocess.run(
        [str(venv / "bin" / "todoctl"), "createdb"],
        env=clean_env(TODO_DATABASE_URL=f"sqlite+aiosqlite:///{database}"),
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    assert "upgraded from empty to" in result.stdout
    assert {"users", "todos"} <= _tables(f"sqlite+aiosqlite:///{database}")


def test_models_match_the_migrations(backend: str, databases: DatabaseFactory) -> None:
    """The ORM models and the migrated schema agree (autogenerate finds nothing to do)."""
    from alembic.autogenerate import compare_metadata
    from alembic.migration import MigrationContext

    from todo_common.models import Base

    url = databases.create(backend)

    async def differences() -> list[object]:
        engine = create_engine(Settings(database_url=url))
        try:
            async with engine.connect() as connection:
                return await connection.run_sync(
                    lambda sync: compare_metadata(MigrationContext.configure(sync), Base.metadata)
                )
        finally:
            await engine.dispose()

    assert asyncio.run(differences()) == []


def test_todo_counts_are_backfilled(backend: str, databases: DatabaseFactory) -> None:
    """Upgrading a database that already has todos counts them (migration 0003)."""
    from alembic import command

    from todo_common.migrate import alembic_config

    url = databases.create(backend, migrate=False)

    async def run() -> dict[str, int]:
        engine = create_engine(Settings(database_url=url))
        try:
            async with engine.begin() as connection:

                def to_0002(sync: object) -> None:
                    config = alembic_config()
                    config.attributes["connection"] = sync
                    command.upgrade(config, "0002")

                await connection.run_sync(to_0002)
                for name, todos in (("a", 3), ("b", 0), ("c", 2)):
                    await connection.execute(
                        text(
                            "INSERT INTO users (username, password_hash, created_at) "
                            "VALUES (:n, '-', CURRENT_TIMESTAMP)"
                        ),
                        {"n": name},
                    )
                    for _ in range(todos):
                        await connection.execute(
                            text(
                                "INSERT INTO todos (owner_id, name, task, created_at, version) "
                                "SELECT id, 'n', 't', CURRENT_TIMESTAMP, 1 FROM users "
                                "WHERE username = :n"
                            ),
                            {"n": name},
                        )
            await upgrade_database(Settings(database_url=url))
            async with engine.connect() as connection:
                rows = await connection.execute(
                    text(
                        "SELECT u.username, c.todos FROM todo_counts c "
                        "JOIN users u ON u.id = c.owner_id"
                    )
                )
                return {name: int(todos) for name, todos in rows.all()}
        finally:
            await engine.dispose()

    assert asyncio.run(run()) == {"a": 3, "c": 2}


def _wait_for_migrations(url: str, timeout: float) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [str(BIN / "todoctl"), "wait-for-migrations", "--timeout", f"{timeout:g}"],
        env=clean_env(TODO_DATABASE_URL=url),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def _upgrade_to(url: str, revision: str) -> None:
    from alembic import command

    from todo_common.migrate import alembic_config

    async def run() -> None:
        engine = create_engine(Settings(database_url=url))
        try:
            async with engine.begin() as connection:

                def upgrade(sync: object) -> None:
                    config = alembic_config()
                    config.attributes["connection"] = sync
                    command.upgrade(config, revision)

                await connection.run_sync(upgrade)
        finally:
            await engine.dispose()

    asyncio.run(run())


def _one_failure_line(stderr: str) -> str:
    """The one `todoctl:` line (the log lines before it say what was waited on)."""
    failures = [line for line in stderr.splitlines() if line.startswith("todoctl:")]
    assert len(failures) == 1, stderr
    assert stderr.strip().splitlines()[-1] == failures[0], stderr
    return failures[0]


def test_wait_for_migrations_gives_up_on_an_empty_database_and_creates_nothing(
    postgres: str, databases: DatabaseFactory
) -> None:
    url = databases.create("postgres", migrate=False)
    run = _wait_for_migrations(url, 1)
    out, err = run.communicate(timeout=60)

    assert run.returncode == 1
    assert out == ""
    line = _one_failure_line(err)
    assert line == f"todoctl: schema at empty, code needs {head_revision()}; gave up after 1s"
    assert _tables(url) == set()  # it only read: not even alembic_version


def test_wait_for_migrations_gives_up_on_an_older_revision(
    backend: str, databases: DatabaseFactory
) -> None:
    from alembic.script import ScriptDirectory

    from todo_common.migrate import alembic_config

    url = databases.create(backend, migrate=False)
    head = head_revision()
    assert head is not None
    older = ScriptDirectory.from_config(alembic_config()).get_revision(head).down_revision
    assert isinstance(older, str)
    _upgrade_to(url, older)

    run = _wait_for_migrations(url, 1)
    _, err = run.communicate(timeout=60)

    assert run.returncode == 1, err
    line = _one_failure_line(err)
    assert line == f"todoctl: schema at {older}, code needs {head}; gave up after 1s"
    assert asyncio.run(upgrade_database(Settings(database_url=url))) == (older, head)  # untouched


def test_wait_for_migrations_waits_for_an_unreachable_database() -> None:
    started = time.monotonic()
    run = _wait_for_migrations("postgresql+asyncpg://postgres@127.0.0.1:1/none", 2)
    _, err = run.communicate(timeout=60)

    assert run.returncode == 1
    assert time.monotonic() - started >= 2  # retried for the whole timeout, not failed at once
    assert _one_failure_line(err).startswith("todoctl: database unreachable (")


def test_wait_for_migrations_exits_0_once_migrate_has_run(
    postgres: str, databases: DatabaseFactory
) -> None:
    url = databases.create("postgres", migrate=False)
    waiting = _wait_for_migrations(url, 60)
    try:
        time.sleep(1.5)
        assert waiting.poll() is None, waiting.communicate()  # still waiting: nothing migrated
        assert _tables(url) == set()

        migrate = subprocess.run(
            [str(BIN / "todoctl"), "migrate", "--wait", "10"],
            env=clean_env(TODO_DATABASE_URL=url),
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert migrate.returncode == 0, migrate.stderr
        assert "upgraded from empty" in migrate.stdout  # the waiter had migrated nothing

        out, err = waiting.communicate(timeout=30)
    finally:
        waiting.kill()
    assert waiting.returncode == 0, err
    assert out.strip() == f"database schema at {head_revision()}, the code's newest migration"
