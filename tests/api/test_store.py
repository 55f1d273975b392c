"""The store (`Database.store()`) in process, on real PostgreSQL and SQLite databases: owner
scoping, the caller's password version checked by every call, the compare-and-set writes, the
exceptions that say why a write changed nothing, and the kept count under racing writers."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest
from sqlalchemy import delete, func, insert, select, update

from todo_api.conditional import todo_tag
from todo_api.resources import Database
from todo_api.store import Store, Window
from todo_common.exceptions import CredentialsRevoked, TodoNotFound, VersionConflict
from todo_common.models import Todo, TodoCount, User, utcnow
from todo_common.settings import Settings

PV = 1  # a new user's password version


@pytest.fixture
async def database(database_url: str) -> AsyncIterator[Database]:
    db = Database(Settings(database_url=database_url))
    await db.open()
    yield db
    await db.close()


async def add_owner(database: Database) -> int:
    """A user row (no password hashing: these tests never log in)."""
    async with database.connection() as connection:
        user_id = await connection.scalar(
            insert(User)
            .values(username=f"u-{uuid.uuid4().hex[:10]}", password_hash="-", created_at=utcnow())
            .returning(User.id)
        )
    assert user_id is not None
    return int(user_id)


async def add_todo(database: Database, owner_id: int, name: str = "buy") -> int:
    async with database.store() as store:
        return await store.create_todo(
            owner_id=owner_id, password_version=PV, name=name, task="groceries"
        )


async def census(database: Database, owner_id: int) -> tuple[int, int, int]:
    """(the owner's rows, the owner's kept count, every todo row): what a write may change."""
    async with database.connection() as connection:
        rows = await connection.scalar(
            select(func.count()).select_from(Todo).where(Todo.owner_id == owner_id)
        )
        kept = await connection.scalar(
            select(TodoCount.todos).where(TodoCount.owner_id == owner_id)
        )
        every = await connection.scalar(select(func.count()).select_from(Todo))
    return int(rows or 0), int(kept or 0), int(every or 0)


async def test_get_todo_is_scoped_to_its_owner(database: Database) -> None:
    owner, other = await add_owner(database), await add_owner(database)
    todo_id = await add_todo(database, owner)

    async with database.store() as store:
        mine = await store.get_todo(owner_id=owner, password_version=PV, todo_id=todo_id)
        theirs = await store.get_todo(owner_id=other, password_version=PV, todo_id=todo_id)
        missing = await store.get_todo(owner_id=owner, password_version=PV, todo_id=todo_id + 99)

    assert mine is not None
    assert (mine.id, mine.name, mine.task, mine.version) == (todo_id, "buy", "groceries", 1)
    assert mine.created_at.tzinfo is not None
    assert (theirs, missing) == (None, None)


async def test_arguments_are_keyword_only(database: Database) -> None:
    owner = await add_owner(database)
    todo_id = await add_todo(database, owner)

    async with database.store() as store:
        with pytest.raises(TypeError):
            await store.get_todo(owner, PV, todo_id)  # type: ignore[misc]


async def test_update_bumps_the_version_and_returns_the_row(database: Database) -> None:
    owner = await add_owner(database)
    todo_id = await add_todo(database, owner)

    async with database.store() as store:
        row = await store.update_todo(
            owner_id=owner, password_version=PV, todo_id=todo_id, name="new", task="text",
            versions=[1],
        )  # fmt: skip

    assert (row.id, row.name, row.task, row.version) == (todo_id, "new", "text", 2)
    assert row.created_at.tzinfo is not None


@pytest.mark.parametrize("versions", [[1], [], [1, 3]], ids=["stale", "none", "others"])
async def test_update_with_a_version_not_current_raises_and_changes_nothing(
    database: Database, versions: list[int]
) -> None:
    owner = await add_owner(database)
    todo_id = await add_todo(database, owner)
    async with database.store() as store:
        await store.update_todo(
            owner_id=owner, password_version=PV, todo_id=todo_id, name="second", task="v2"
        )
        with pytest.raises(VersionConflict) as raised:
            await store.update_todo(
                owner_id=owner, password_version=PV, todo_id=todo_id, name="x", task="y",
                versions=versions,
            )  # fmt: skip
        row = await store.get_todo(owner_id=owner, password_version=PV, todo_id=todo_id)

    assert raised.value.todo_id == todo_id
    assert row is not None and (row.name, row.version) == ("second", 2)


async def test_writes_to_another_owners_todo_raise_not_found(database: Database) -> None:
    owner, other = await add_owner(database), await add_owner(database)
    todo_id = await add_todo(database, owner)

    async with database.store() as store:
        for versions in (None, "*", [1]):
            with pytest.raises(TodoNotFound):
                await store.update_todo(
                    owner_id=other, password_version=PV, todo_id=todo_id, name="x", task="y",
                    versions=versions,
                )  # fmt: skip
            with pytest.raises(TodoNotFound):
                await store.delete_todo(
                    owner_id=other, password_version=PV, todo_id=todo_id, versions=versions
                )
        row = await store.get_todo(owner_id=owner, password_version=PV, todo_id=todo_id)

    assert row is not None and (row.name, row.version) == ("buy", 1)
    assert await census(database, owner) == (1, 1, 1)


async def test_delete_compare_and_sets_and_keeps_the_count(database: Database) -> None:
    owner = await add_owner(database)
    todo_id = await add_todo(database, owner)

    async with database.store() as store:
        with pytest.raises(VersionConflict):
            await store.delete_todo(
                owner_id=owner, password_version=PV, todo_id=todo_id, versions=[2]
            )
        assert await store.count_todos(owner_id=owner, password_version=PV) == 1
        await store.delete_todo(owner_id=owner, password_version=PV, todo_id=todo_id, versions=[1])
        with pytest.raises(TodoNotFound):
            await store.delete_todo(owner_id=owner, password_version=PV, todo_id=todo_id)
        assert await store.get_todo(owner_id=owner, password_version=PV, todo_id=todo_id) is None
        assert await store.count_todos(owner_id=owner, password_version=PV) == 0
        stats = await store.read_stats(owner_id=owner, password_version=PV, top=5)

    assert (stats.todos, stats.hits, stats.most_viewed) == (0, 0, [])


def every_call(todo_id: int) -> dict[str, Callable[[Store, int, int], Awaitable[Any]]]:
    """Each store method, called as (store, owner_id, password_version)."""
    return {
        "get_todo": lambda s, o, p: s.get_todo(owner_id=o, password_version=p, todo_id=todo_id),
        "count_todos": lambda s, o, p: s.count_todos(owner_id=o, password_version=p),
        "list_todo_ids": lambda s, o, p: s.list_todo_ids(
            owner_id=o, password_version=p, window=Window(limit=10)
        ),
        "read_stats": lambda s, o, p: s.read_stats(owner_id=o, password_version=p, top=5),
        "create_todo": lambda s, o, p: s.create_todo(
            owner_id=o, password_version=p, name="n", task="t"
        ),
        "update_todo": lambda s, o, p: s.update_todo(
            owner_id=o, password_version=p, todo_id=todo_id, name="n", task="t"
        ),
        "delete_todo": lambda s, o, p: s.delete_todo(
            owner_id=o, password_version=p, todo_id=todo_id
        ),
    }


@pytest.mark.parametrize("method", list(every_call(0)))
async def test_a_changed_password_version_revokes_every_call(
    database: Database, method: str
) -> None:
    owner = await add_owner(database)
    todo_id = await add_todo(database, owner)
    async with database.connection() as connection:
        await connection.execute(update(User).where(User.id == owner).values(password_version=2))
    call = every_call(todo_id)[method]

    async with database.store() as store:
        for stale in (PV, 3):
            with pytest.raises(CredentialsRevoked) as raised:
                await call(store, owner, stale)
            assert raised.value.user_id == owner
        await call(store, owner, 2)  # the current version still works

    if method not in ("create_todo", "update_todo", "delete_todo"):
        return
    async with database.store() as store:
        row = await store.get_todo(owner_id=owner, password_version=2, todo_id=todo_id)
    rows, _, _ = await census(database, owner)
    # Only the one call with the current version wrote anything.
    expected = {"create_todo": (2, "buy", 1), "update_todo": (1, "n", 2), "delete_todo": (0,)}
    got = (rows,) if row is None else (rows, row.name, row.version)
    assert got == expected[method]


@pytest.mark.parametrize("method", list(every_call(0)))
async def test_a_deleted_user_is_revoked_and_nothing_is_written(
    database: Database, method: str
) -> None:
    owner, other = await add_owner(database), await add_owner(database)
    todo_id = await add_todo(database, other)
    async with database.connection() as connection:
        await connection.execute(delete(User).where(User.id == owner))

    async with database.store() as store:
        with pytest.raises(CredentialsRevoked):
            await every_call(todo_id)[method](store, owner, PV)

    assert await census(database, owner) == (0, 0, 1)
    assert await census(database, other) == (1, 1, 1)


async def test_concurrent_writers_of_one_version_exactly_one_wins(database: Database) -> None:
    owner = await add_owner(database)
    todo_id = await add_todo(database, owner)

    async def write(i: int) -> str:
        try:
            async with database.store() as store:
                await store.update_todo(
                    owner_id=owner, password_version=PV, todo_id=todo_id, name=f"w{i}", task="t",
                    versions=[1],
                )  # fmt: skip
        except VersionConflict:
            return "conflict"
        return "won"

    outcomes = await asyncio.gather(*(write(i) for i in range(32)))

    assert sorted(outcomes) == ["conflict"] * 31 + ["won"]
    async with database.store() as store:
        row = await store.get_todo(owner_id=owner, password_version=PV, todo_id=todo_id)
    assert row is not None and row.version == 2


async def test_racing_creates_and_deletes_keep_the_count_exact(database: Database) -> None:
    owner = await add_owner(database)
    first = [await add_todo(database, owner) for _ in range(20)]

    async def create() -> None:
        await add_todo(database, owner)

    async def remove(todo_id: int) -> None:
        async with database.store() as store:
            await store.delete_todo(owner_id=owner, password_version=PV, todo_id=todo_id)

    # Each of the first 10 is deleted twice at once: exactly one delete may uncount it.
    outcomes = await asyncio.gather(
        *(create() for _ in range(30)),
        *(remove(t) for t in first[:10] * 2),
        return_exceptions=True,
    )

    assert all(o is None or isinstance(o, TodoNotFound) for o in outcomes), outcomes
    assert sum(isinstance(o, TodoNotFound) for o in outcomes) == 10
    rows, kept, _ = await census(database, owner)
    async with database.store() as store:
        counted = await store.count_todos(owner_id=owner, password_version=PV)
        listed, _ = await store.list_todo_ids(
            owner_id=owner, password_version=PV, window=Window(limit=1)
        )
    assert rows == kept == counted == listed == 40


async def test_a_deleted_todos_id_is_never_handed_out_again(database: Database) -> None:
    """Tags are (id, version): they are strong only if a new todo never gets an old id (SQLite's
    table is AUTOINCREMENT, PostgreSQL's a sequence), even when the highest id was deleted."""
    owner = await add_owner(database)
    first = await add_todo(database, owner)
    async with database.store() as store:
        await store.delete_todo(owner_id=owner, password_version=PV, todo_id=first)

    second = await add_todo(database, owner)

    assert second > first
    assert todo_tag(second, 1) != todo_tag(first, 1)
    async with database.connection() as connection:
        assert (await connection.execute(select(Todo.id))).scalars().all() == [second]
