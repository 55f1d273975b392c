"""`todoctl`: operate a todo deployment (schema migrations, users and their passwords).

Every failure ends with one line on stderr and exit status 1; nothing is half-written.
"""

from __future__ import annotations

import argparse
import asyncio
import getpass
import logging
import sys
from collections.abc import Sequence

from sqlalchemy.exc import DBAPIError

from todo_common.db import create_engine, create_sessionmaker, translate_database_errors
from todo_common.exceptions import DatabaseUnavailable, SchemaNotReady, UserExistsError
from todo_common.logs import configure_logging
from todo_common.migrate import upgrade_database, wait_for_head
from todo_common.settings import Settings, load_settings
from todo_common.users import change_password, check_username, create_user


class CommandError(Exception):
    """A failure to report as one line."""


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="todoctl", description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    commands.add_parser("createdb", help="create or upgrade the schema to the newest migration")
    migrate = commands.add_parser(
        "migrate", help="upgrade to the newest migration, waiting for the database"
    )
    migrate.add_argument(
        "--wait", type=float, default=0, metavar="SECONDS", help="how long to wait for the DB"
    )
    wait = commands.add_parser(
        "wait-for-migrations",
        help="wait until the schema is at the code's newest migration (never migrates)",
    )
    wait.add_argument(
        "--timeout", type=float, default=300, metavar="SECONDS", help="how long to wait"
    )
    adduser = commands.add_parser("adduser", help="register a user")
    adduser.add_argument("name")
    adduser.add_argument(
        "--password-stdin", action="store_true", help="read the password from standard input"
    )
    passwd = commands.add_parser(
        "passwd", help="change a user's password (revokes every token issued before)"
    )
    passwd.add_argument("name")
    passwd.add_argument(
        "--password-stdin", action="store_true", help="read the new password from standard input"
    )
    return parser


def _read_password(from_stdin: bool) -> str:
    if from_stdin:
        password = sys.stdin.readline().rstrip("\r\n")
    else:
        password = getpass.getpass("Password: ")
        if password != getpass.getpass("Repeat password: "):
            raise CommandError("passwords do not match")
    if not password:
        raise CommandError("password must not be empty")
    return password


async def _migrate(settings: Settings, wait: float) -> str:
    try:
        before, after = await upgrade_database(settings, wait)
    except DatabaseUnavailable as error:
        raise CommandError(str(error)) from error
    except DBAPIError as error:  # a wrong password, no such database, a failing migration
        raise CommandError(f"cannot migrate the database ({_reason(error)})") from error
    if before == after:
        return f"database schema already at {after}"
    return f"database schema upgraded from {before or 'empty'} to {after}"


async def _wait_for_migrations(settings: Settings, wait: float) -> str:
    try:
        head = await wait_for_head(settings, wait)
    except SchemaNotReady as error:
        raise CommandError(str(error)) from error
    except DBAPIError as error:  # a wrong password, no such database
        raise CommandError(f"cannot read the schema revision ({_reason(error)})") from error
    return f"database schema at {head}, the code's newest migration"


def _reason(error: DBAPIError) -> str:
    """The driver's message, without SQLAlchemy's statement and help link."""
    cause = error.orig if error.orig is not None else error
    return (str(cause).strip() or type(cause).__name__).splitlines()[0]


def _unwritable(error: DBAPIError) -> CommandError:
    return CommandError(
        f"cannot write to the database ({_reason(error)}); is it migrated (todoctl migrate)?"
    )


def _unavailable(error: DatabaseUnavailable) -> CommandError:
    return CommandError(f"the database is unavailable ({error}); is it up? retry later")


async def _adduser(settings: Settings, name: str, password: str) -> str:
    engine = create_engine(settings)
    try:
        async with translate_database_errors(), create_sessionmaker(engine)() as session:
            user = await create_user(session, name, password)
    except UserExistsError as error:
        raise CommandError(f"user {name!r} already exists") from error
    except DatabaseUnavailable as error:
        raise _unavailable(error) from error
    except DBAPIError as error:
        raise _unwritable(error) from error
    finally:
        await engine.dispose()
    return f"user {user.username!r} added (id {user.id})"


async def _passwd(settings: Settings, name: str, password: str) -> str:
    engine = create_engine(settings)
    try:
        async with translate_database_errors(), create_sessionmaker(engine)() as session:
            version = await change_password(session, name, password)
    except DatabaseUnavailable as error:
        raise _unavailable(error) from error
    except DBAPIError as error:
        raise _unwritable(error) from error
    finally:
        await engine.dispose()
    if version is None:
        raise CommandError(f"no user named {name!r}")
    return f"password of {name!r} changed; tokens issued before now no longer work"


def run(argv: Sequence[str] | None = None) -> str:
    args = _parser().parse_args(argv)
    settings = load_settings()
    configure_logging(settings, "todoctl")
    logging.getLogger("alembic").setLevel(logging.WARNING)
    if args.command in ("createdb", "migrate"):
        return asyncio.run(_migrate(settings, getattr(args, "wait", 0)))
    if args.command == "wait-for-migrations":
        return asyncio.run(_wait_for_migrations(settings, args.timeout))
    problem = check_username(args.name)
    if problem:
        raise CommandError(problem)
    password = _read_password(args.password_stdin)
    if args.command == "passwd":
        return asyncio.run(_passwd(settings, args.name, password))
    return asyncio.run(_adduser(settings, args.name, password))


def main(argv: Sequence[str] | None = None) -> None:
    try:
        print(run(argv))
    except CommandError as error:
        print(f"todoctl: {error}", file=sys.stderr)
        raise SystemExit(1) from None
    except (KeyboardInterrupt, EOFError):
        print("todoctl: interrupted", file=sys.stderr)
        raise SystemExit(1) from None
