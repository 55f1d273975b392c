"""`todoctl adduser`: prompts twice like the seed, and refuses bad input with one line."""

from __future__ import annotations

import asyncio
import fcntl
import os
import pty
import subprocess
import termios
import time
import uuid

import pytest

from tests.support.databases import DatabaseFactory
from tests.support.servers import BIN, clean_env, free_port
from todo_common.db import create_engine, create_sessionmaker
from todo_common.settings import Settings
from todo_common.users import authenticate_user, get_user_by_name


def todoctl(url: str, *args: str, stdin: str = "") -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(BIN / "todoctl"), *args],
        input=stdin,
        env=clean_env(TODO_DATABASE_URL=url),
        capture_output=True,
        text=True,
        timeout=60,
    )


def user_exists(url: str, name: str, password: str | None = None) -> bool:
    async def lookup() -> bool:
        engine = create_engine(Settings(database_url=url))
        try:
            async with create_sessionmaker(engine)() as session:
                if password is None:
                    return await get_user_by_name(session, name) is not None
                return await authenticate_user(session, name, password) is not None
        finally:
            await engine.dispose()

    return asyncio.run(lookup())


def run_on_terminal(url: str, args: list[str], answers: list[str]) -> tuple[int, str]:
    """Run todoctl with a pseudo-terminal as its controlling terminal and type `answers`."""
    controller, terminal = pty.openpty()

    def take_terminal() -> None:
        os.setsid()
        fcntl.ioctl(terminal, termios.TIOCSCTTY, 0)

    process = subprocess.Popen(
        [str(BIN / "todoctl"), *args],
        stdin=terminal,
        stdout=terminal,
        stderr=terminal,
        env=clean_env(TODO_DATABASE_URL=url, TODO_LOG_FORMAT="json"),
        preexec_fn=take_terminal,
    )
    os.close(terminal)
    output = b""
    for answer in answers:
        deadline = time.monotonic() + 30
        while b"assword: " not in output.split(b"\n")[-1] and time.monotonic() < deadline:
            output += os.read(controller, 1024)
        os.write(controller, answer.encode() + b"\n")
        output += b"\n"
    process.wait(60)
    try:
        while chunk := os.read(controller, 1024):
            output += chunk
    except OSError:
        pass
    os.close(controller)
    return process.returncode, output.decode(errors="replace")


def test_adduser_prompts_twice(backend: str, database_url: str) -> None:
    code, output = run_on_terminal(database_url, ["adduser", "alice"], ["pa55word", "pa55word"])

    assert code == 0, output
    assert "Password: " in output and "Repeat password: " in output
    assert "user 'alice' added" in output
    assert user_exists(database_url, "alice", "pa55word")


@pytest.fixture
def sqlite_url(databases: DatabaseFactory) -> str:
    return databases.create("sqlite")


def test_adduser_mismatch_writes_nothing(sqlite_url: str) -> None:
    database_url = sqlite_url
    code, output = run_on_terminal(database_url, ["adduser", "bob"], ["one", "two"])

    assert code == 1
    assert "todoctl: passwords do not match" in output
    assert not user_exists(database_url, "bob")


def test_adduser_from_stdin(database_url: str) -> None:
    result = todoctl(database_url, "adduser", "carol", "--password-stdin", stdin="s3cret\n")

    assert result.returncode == 0, result.stderr
    assert user_exists(database_url, "carol", "s3cret")


@pytest.mark.parametrize(
    ("name", "stdin", "message"),
    [
        ("dave", "\n", "todoctl: password must not be empty"),
        ("", "pw\n", "todoctl: user name must be non-empty"),
        ("a:b", "pw\n", "todoctl: user name must not contain ':'"),
        ("x" * 65, "pw\n", "todoctl: user name must be at most 64 characters"),
    ],
)
def test_adduser_refuses_bad_input_with_one_line(
    sqlite_url: str, name: str, stdin: str, message: str
) -> None:
    database_url = sqlite_url
    result = todoctl(database_url, "adduser", name, "--password-stdin", stdin=stdin)

    assert result.returncode == 1
    assert result.stderr.strip().splitlines() == [result.stderr.strip()]
    assert result.stderr.startswith(message)
    assert not user_exists(database_url, name)


def test_adduser_refuses_an_existing_name(sqlite_url: str) -> None:
    database_url = sqlite_url
    todoctl(database_url, "adduser", "erin", "--password-stdin", stdin="first\n")

    again = todoctl(database_url, "adduser", "erin", "--password-stdin", stdin="second\n")

    assert again.returncode == 1
    assert again.stderr.strip() == "todoctl: user 'erin' already exists"
    assert user_exists(database_url, "erin", "first")


def test_createdb_says_what_it_did_in_one_line(databases: DatabaseFactory) -> None:
    url = databases.create("sqlite", migrate=False)

    first, again = todoctl(url, "createdb"), todoctl(url, "createdb")

    assert first.returncode == again.returncode == 0
    (said,) = (first.stdout + first.stderr).strip().splitlines()
    head = said.removeprefix("database schema upgraded from empty to ")
    assert head != said and head.isalnum()
    assert (again.stdout + again.stderr).strip().splitlines() == [
        f"database schema already at {head}"
    ]


def test_adduser_before_migrating_says_so(databases: DatabaseFactory) -> None:
    url = databases.create("sqlite", migrate=False)

    result = todoctl(url, "adduser", "frank", "--password-stdin", stdin="pw\n")

    assert result.returncode == 1
    assert len(result.stderr.strip().splitlines()) == 1
    assert "todoctl migrate" in result.stderr


def test_passwd_changes_the_password(backend: str, database_url: str) -> None:
    todoctl(database_url, "adduser", "grace", "--password-stdin", stdin="old one\n")

    code, output = run_on_terminal(database_url, ["passwd", "grace"], ["new one", "new one"])

    assert code == 0, output
    assert "password of 'grace' changed" in output
    assert user_exists(database_url, "grace", "new one")
    assert not user_exists(database_url, "grace", "old one")


def test_passwd_of_an_unknown_user_fails_with_one_line(sqlite_url: str) -> None:
    result = todoctl(sqlite_url, "passwd", "nobody", "--password-stdin", stdin="pw\n")

    assert result.returncode == 1
    assert result.stderr.strip() == "todoctl: no user named 'nobody'"


def test_passwd_refuses_an_empty_password_and_keeps_the_old(sqlite_url: str) -> None:
    todoctl(sqlite_url, "adduser", "heidi", "--password-stdin", stdin="kept\n")

    result = todoctl(sqlite_url, "passwd", "heidi", "--password-stdin", stdin="\n")

    assert result.returncode == 1
    assert result.stderr.strip() == "todoctl: password must not be empty"
    assert user_exists(sqlite_url, "heidi", "kept")


def test_adduser_on_a_database_that_is_down_says_so_in_one_line() -> None:
    refused = f"postgresql+asyncpg://postgres@127.0.0.1:{free_port()}/none"

    result = todoctl(refused, "adduser", "ivan", "--password-stdin", stdin="pw\n")

    assert result.returncode == 1
    assert result.stderr.strip().splitlines() == [result.stderr.strip()], result.stderr
    assert result.stderr.startswith("todoctl: the database is unavailable (ConnectionRefused")


def test_migrate_fails_at_once_with_one_line_on_a_real_error(postgres: str) -> None:
    """No such database: waiting would not mend it, so --wait does not wait."""
    missing = f"postgresql+asyncpg://postgres@127.0.0.1:5432/todo_missing_{uuid.uuid4().hex[:8]}"
    started = time.monotonic()

    result = todoctl(missing, "migrate", "--wait", "30")

    assert time.monotonic() - started < 20
    assert result.returncode == 1
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith("todoctl: cannot migrate the database (") and "does not exist" in last
