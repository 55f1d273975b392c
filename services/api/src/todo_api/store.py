"""The todo store: its row types, the `Store` interface the blueprints code against, and its
SQLite implementation (SQLAlchemy Core). PostgreSQL's, on raw asyncpg, is `todo_api.pg_store`;
`todo_api.resources.Database.store()` hands out the one that fits the database.

Every call names its caller (`owner_id`, `password_version`, keyword-only, so two ids can never be
swapped silently) and checks it: no user with that id and password version (a token older than a
password change, or its user is gone) raises `CredentialsRevoked`, and nothing is written. Every
query is scoped to its owner: another user's todo does not exist. Reads return a row or None; a
write that cannot happen raises `TodoNotFound` or `VersionConflict` (todo_common.exceptions).
Writes that take expected versions compare-and-set in their UPDATE/DELETE statement, so two
writers holding the same ETag cannot both win.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Literal, Protocol

from sqlalchemy import delete, exists, func, insert, literal, select, true, update
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.ext.asyncio import AsyncConnection

from todo_common.exceptions import CredentialsRevoked, TodoNotFound, VersionConflict
from todo_common.models import Todo, TodoCount, TodoHits, User, UTCDateTime, utcnow
from todo_common.users import Login, get_login

Versions = Sequence[int] | Literal["*"] | None


@dataclass(frozen=True)
class TodoRow:
    id: int
    name: str
    task: str
    created_at: datetime
    version: int


@dataclass(frozen=True)
class Stats:
    todos: int
    hits: int
    most_viewed: list[tuple[int, int]]  # (todo id, hits), most viewed first


@dataclass(frozen=True)
class Window:
    """Which of an owner's todos (in id order) a page holds: after or before an id (a keyset
    cursor, an index seek), or `skip` rows from the start or, when `from_end`, from the end."""

    limit: int
    after: int | None = None
    before: int | None = None
    skip: int = 0
    from_end: bool = False


class Store(Protocol):
    """The store calls of one request, bound to one pooled connection."""

    async def ping(self) -> None:
        """One round trip: the database answers (readiness)."""
        ...

    async def get_login(self, *, username: str) -> Login | None:
        """The user's id, stored hash and password version (what a password check needs)."""
        ...

    async def get_todo(
        self, *, owner_id: int, password_version: int, todo_id: int
    ) -> TodoRow | None: ...

    async def count_todos(self, *, owner_id: int, password_version: int) -> int:
        """The owner's number of todos: the kept count, not a count of rows."""
        ...

    async def list_todo_ids(
        self, *, owner_id: int, password_version: int, window: Window
    ) -> tuple[int, list[int]]:
        """(the owner's total, the window's todo ids in id order), from one snapshot."""
        ...

    async def read_stats(self, *, owner_id: int, password_version: int, top: int) -> Stats:
        """The owner's totals and `top` most viewed todos, from one snapshot."""
        ...

    async def create_todo(
        self, *, owner_id: int, password_version: int, name: str, task: str
    ) -> int:
        """Insert a todo and count it (both or neither); its id."""
        ...

    async def update_todo(
        self,
        *,
        owner_id: int,
        password_version: int,
        todo_id: int,
        name: str,
        task: str,
        versions: Versions = None,
    ) -> TodoRow:
        """Write name and task and bump the version, if the version is one of `versions` (None
        or `*`: any). The updated row; `TodoNotFound` or `VersionConflict` when nothing changed."""
        ...

    async def delete_todo(
        self, *, owner_id: int, password_version: int, todo_id: int, versions: Versions = None
    ) -> None:
        """Delete the todo if its version is one of `versions` (None or `*`: any) and uncount
        it; `TodoNotFound` or `VersionConflict` when nothing was deleted."""
        ...


_COLUMNS = (Todo.id, Todo.name, Todo.task, Todo.created_at, Todo.version)


def _caller(owner_id: int, password_version: int):  # type: ignore[no-untyped-def]
    return exists().where(User.id == owner_id, User.password_version == password_version)


def _total(owner_id: int):  # type: ignore[no-untyped-def]
    total = select(TodoCount.todos).where(TodoCount.owner_id == owner_id).scalar_subquery()
    return func.coalesce(total, 0)


def _expected(versions: Versions) -> list[int] | None:
    return None if versions is None or versions == "*" else list(versions)


class SqliteStore:
    """`Store` on SQLite, through SQLAlchemy. Each call is one transaction (SQLite serializes
    writers), so a write and the reads that explain a miss see the same database."""

    def __init__(self, connection: AsyncConnection) -> None:
        self._connection = connection

    async def ping(self) -> None:
        await self._connection.execute(select(literal(1)))

    async def get_login(self, *, username: str) -> Login | None:
        return await get_login(self._connection, username=username)

    async def _check(self, owner_id: int, password_version: int) -> None:
        if not await self._connection.scalar(select(_caller(owner_id, password_version))):
            raise CredentialsRevoked(owner_id)

    async def get_todo(
        self, *, owner_id: int, password_version: int, todo_id: int
    ) -> TodoRow | None:
        async with self._connection.begin():
            await self._check(owner_id, password_version)
            row = (
                await self._connection.execute(
                    select(*_COLUMNS).where(Todo.id == todo_id, Todo.owner_id == owner_id)
                )
            ).one_or_none()
        return TodoRow(*row) if row is not None else None

    async def count_todos(self, *, owner_id: int, password_version: int) -> int:
        async with self._connection.begin():
            await self._check(owner_id, password_version)
            return int(await self._connection.scalar(select(_total(owner_id))) or 0)

    async def list_todo_ids(
        self, *, owner_id: int, password_version: int, window: Window
    ) -> tuple[int, list[int]]:
        ids = select(Todo.id).where(Todo.owner_id == owner_id)
        backwards = window.before is not None or window.from_end
        if window.after is not None:
            ids = ids.where(Todo.id > window.after)
        if window.before is not None:
            ids = ids.where(Todo.id < window.before)
        ids = ids.order_by(Todo.id.desc() if backwards else Todo.id).offset(window.skip)
        page = ids.limit(window.limit).subquery()
        totals = select(_total(owner_id).label("total")).subquery()
        async with self._connection.begin():
            await self._check(owner_id, password_version)
            rows = (
                await self._connection.execute(
                    select(totals.c.total, page.c.id).select_from(totals.outerjoin(page, true()))
                )
            ).all()
        return int(rows[0][0]), sorted(int(row[1]) for row in rows if row[1] is not None)

    async def read_stats(self, *, owner_id: int, password_version: int, top: int) -> Stats:
        hits = (
            select(func.coalesce(func.sum(TodoHits.hits), 0))
            .where(TodoHits.owner_id == owner_id)
            .scalar_subquery()
        )
        totals = select(_total(owner_id).label("todos"), hits.label("hits")).subquery()
        ranked = (
            select(TodoHits.todo_id, TodoHits.hits)
            .where(TodoHits.owner_id == owner_id, TodoHits.hits > 0)
            .order_by(TodoHits.hits.desc(), TodoHits.todo_id)
            .limit(top)
            .subquery()
        )
        async with self._connection.begin():
            await self._check(owner_id, password_version)
            rows = (
                await self._connection.execute(
                    select(totals.c.todos, totals.c.hits, ranked.c.todo_id, ranked.c.hits)
                    .select_from(totals.outerjoin(ranked, true()))
                    .order_by(ranked.c.hits.desc(), ranked.c.todo_id)
                )
            ).all()
        return Stats(
            todos=int(rows[0][0]),
            hits=int(rows[0][1]),
            most_viewed=[(int(row[2]), int(row[3])) for row in rows if row[2] is not None],
        )

    async def create_todo(
        self, *, owner_id: int, password_version: int, name: str, task: str
    ) -> int:
        # INSERT ... SELECT from the caller's user row: a revoked caller inserts nothing.
        values = select(
            User.id, literal(name), literal(task), literal(utcnow(), UTCDateTime()), literal(1)
        ).where(User.id == owner_id, User.password_version == password_version)
        columns = ["owner_id", "name", "task", "created_at", "version"]
        async with self._connection.begin():
            todo_id = await self._connection.scalar(
                insert(Todo).from_select(columns, values).returning(Todo.id)
            )
            if todo_id is None:
                raise CredentialsRevoked(owner_id)
            count = sqlite_insert(TodoCount).values(owner_id=owner_id, todos=1)
            await self._connection.execute(
                count.on_conflict_do_update(
                    index_elements=[TodoCount.owner_id], set_={"todos": TodoCount.todos + 1}
                )
            )
        return int(todo_id)

    async def update_todo(
        self,
        *,
        owner_id: int,
        password_version: int,
        todo_id: int,
        name: str,
        task: str,
        versions: Versions = None,
    ) -> TodoRow:
        expected = _expected(versions)
        statement = self._guarded(update(Todo), owner_id, password_version, todo_id, expected)
        async with self._connection.begin():
            row = (
                await self._connection.execute(
                    statement.values(name=name, task=task, version=Todo.version + 1).returning(
                        *_COLUMNS
                    )
                )
            ).one_or_none()
            if row is None:
                raise await self._why_unchanged(owner_id, password_version, todo_id, expected)
        return TodoRow(*row)

    async def delete_todo(
        self, *, owner_id: int, password_version: int, todo_id: int, versions: Versions = None
    ) -> None:
        expected = _expected(versions)
        statement = self._guarded(delete(Todo), owner_id, password_version, todo_id, expected)
        async with self._connection.begin():
            if await self._connection.scalar(statement.returning(Todo.id)) is None:
                raise await self._why_unchanged(owner_id, password_version, todo_id, expected)
            await self._connection.execute(
                update(TodoCount)
                .where(TodoCount.owner_id == owner_id)
                .values(todos=TodoCount.todos - 1)
            )

    @staticmethod
    def _guarded(statement, owner_id: int, password_version: int, todo_id: int, expected):  # type: ignore[no-untyped-def]
        statement = statement.where(
            Todo.id == todo_id, Todo.owner_id == owner_id, _caller(owner_id, password_version)
        )
        if expected is not None:
            statement = statement.where(Todo.version.in_(expected))
        return statement

    async def _why_unchanged(
        self, owner_id: int, password_version: int, todo_id: int, expected: list[int] | None
    ) -> CredentialsRevoked | TodoNotFound | VersionConflict:
        # Inside the write's transaction: only the answer depends on these reads.
        await self._check(owner_id, password_version)
        if expected is None:
            return TodoNotFound(todo_id)
        found = await self._connection.scalar(
            select(exists().where(Todo.id == todo_id, Todo.owner_id == owner_id))
        )
        return VersionConflict(todo_id) if found else TodoNotFound(todo_id)
