"""Data functions for todos. Every query is scoped to its owner: another user's todo does not exist.

Each takes the connection first and everything else by keyword (`owner_id=`, `todo_id=`), so two
ids can never be swapped silently. Reads return a row or None; a write that cannot happen raises
`TodoNotFound` or `VersionConflict` (todo_common.exceptions), which the API's error handlers answer
with 404 and 412, once for every route.

Writes that take expected versions compare-and-set in one UPDATE/DELETE statement, so two
writers holding the same ETag cannot both win.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Literal

from sqlalchemy import delete, func, insert, select, true, update
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession

from todo_common.db import dialect_insert
from todo_common.exceptions import TodoNotFound, VersionConflict
from todo_common.models import Todo, TodoCount, TodoHits, utcnow

Versions = Sequence[int] | Literal["*"] | None
# Reads run on a plain autocommit connection (the hot path) or inside a write's session.
Reader = AsyncConnection | AsyncSession


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


_COLUMNS = (Todo.id, Todo.name, Todo.task, Todo.created_at, Todo.version)


async def get_todo(connection: Reader, *, owner_id: int, todo_id: int) -> TodoRow | None:
    row = (
        await connection.execute(
            select(*_COLUMNS).where(Todo.id == todo_id, Todo.owner_id == owner_id)
        )
    ).one_or_none()
    return TodoRow(*row) if row is not None else None


@dataclass(frozen=True)
class Window:
    """Which of an owner's todos (in id order) a page holds: after or before an id (a keyset
    cursor, an index seek), or `skip` rows from the start or, when `from_end`, from the end."""

    limit: int
    after: int | None = None
    before: int | None = None
    skip: int = 0
    from_end: bool = False


def _total(owner_id: int):  # type: ignore[no-untyped-def]
    return select(TodoCount.todos).where(TodoCount.owner_id == owner_id).scalar_subquery()


async def count_todos(connection: Reader, *, owner_id: int) -> int:
    """The owner's number of todos: one primary-key read of the kept count."""
    return int(await connection.scalar(select(func.coalesce(_total(owner_id), 0))) or 0)


async def list_todo_ids(
    connection: Reader, *, owner_id: int, window: Window
) -> tuple[int, list[int]]:
    """(the owner's total, the window's todo ids in id order), in one statement."""
    ids = select(Todo.id).where(Todo.owner_id == owner_id)
    backwards = window.before is not None or window.from_end
    if window.after is not None:
        ids = ids.where(Todo.id > window.after)
    if window.before is not None:
        ids = ids.where(Todo.id < window.before)
    ids = ids.order_by(Todo.id.desc() if backwards else Todo.id).offset(window.skip)
    page = ids.limit(window.limit).subquery()
    totals = select(func.coalesce(_total(owner_id), 0).label("total")).subquery()
    rows = (
        await connection.execute(
            select(totals.c.total, page.c.id).select_from(totals.outerjoin(page, true()))
        )
    ).all()
    found = sorted(int(row[1]) for row in rows if row[1] is not None)
    return int(rows[0][0]), found


async def create_todo(session: AsyncSession, *, owner_id: int, name: str, task: str) -> int:
    """Insert a todo and count it (call inside a transaction: both commit or neither does)."""
    todo_id = await session.scalar(
        insert(Todo)
        .values(owner_id=owner_id, name=name, task=task, created_at=utcnow(), version=1)
        .returning(Todo.id)
    )
    assert todo_id is not None
    await _add_to_count(session, owner_id=owner_id, delta=1)
    return int(todo_id)


async def _add_to_count(session: AsyncSession, *, owner_id: int, delta: int) -> None:
    upsert = dialect_insert(session)(TodoCount).values(owner_id=owner_id, todos=delta)
    await session.execute(
        upsert.on_conflict_do_update(
            index_elements=[TodoCount.owner_id], set_={"todos": TodoCount.todos + delta}
        )
    )


def _guarded(statement, *, owner_id: int, todo_id: int, versions: Versions):  # type: ignore[no-untyped-def]
    statement = statement.where(Todo.id == todo_id, Todo.owner_id == owner_id)
    if versions is not None and versions != "*":
        statement = statement.where(Todo.version.in_(list(versions)))
    return statement


async def update_todo(
    session: AsyncSession,
    *,
    owner_id: int,
    todo_id: int,
    name: str,
    task: str,
    versions: Versions = None,
) -> TodoRow:
    """Write name and task and bump the version, if the version is one of `versions` (None or
    `*`: any). The updated row; `TodoNotFound` or `VersionConflict` when nothing changed."""
    statement = _guarded(update(Todo), owner_id=owner_id, todo_id=todo_id, versions=versions)
    row = (
        await session.execute(
            statement.values(name=name, task=task, version=Todo.version + 1).returning(*_COLUMNS)
        )
    ).one_or_none()
    if row is None:
        raise await _why_unchanged(session, owner_id=owner_id, todo_id=todo_id)
    return TodoRow(*row)


async def delete_todo(
    session: AsyncSession, *, owner_id: int, todo_id: int, versions: Versions = None
) -> None:
    """Delete the todo if its version is one of `versions` (None or `*`: any) and uncount it;
    `TodoNotFound` or `VersionConflict` when nothing was deleted."""
    statement = _guarded(delete(Todo), owner_id=owner_id, todo_id=todo_id, versions=versions)
    deleted = await session.scalar(statement.returning(Todo.id))
    if deleted is None:
        raise await _why_unchanged(session, owner_id=owner_id, todo_id=todo_id)
    await _add_to_count(session, owner_id=owner_id, delta=-1)


async def _why_unchanged(
    session: AsyncSession, *, owner_id: int, todo_id: int
) -> TodoNotFound | VersionConflict:
    # Read after the guarded write matched nothing: the row exists (so its version differed)
    # or it does not. Only the answer's status depends on this read, never what was written.
    exists = await get_todo(session, owner_id=owner_id, todo_id=todo_id)
    return VersionConflict(todo_id) if exists is not None else TodoNotFound(todo_id)


async def read_stats(connection: Reader, *, owner_id: int, top: int) -> Stats:
    """The owner's totals and `top` most viewed todos, in one statement (one snapshot)."""
    todos = func.coalesce(_total(owner_id), 0)
    hits = (
        select(func.coalesce(func.sum(TodoHits.hits), 0))
        .where(TodoHits.owner_id == owner_id)
        .scalar_subquery()
    )
    totals = select(todos.label("todos"), hits.label("hits")).subquery()
    ranked = (
        select(TodoHits.todo_id, TodoHits.hits)
        .where(TodoHits.owner_id == owner_id, TodoHits.hits > 0)
        .order_by(TodoHits.hits.desc(), TodoHits.todo_id)
        .limit(top)
        .subquery()
    )
    rows = (
        await connection.execute(
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
