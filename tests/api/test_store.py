"""The store's data functions in process, on real PostgreSQL and SQLite databases: owner scoping,
the compare-and-set writes and the exceptions that say why a write changed nothing."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator

import pytest
from sqlalchemy import insert, select
from sqlalchemy.ext.asyncio import AsyncEngine

from todo_api.conditional import todo_tag
from todo_api.store import (
    count_todos,
    create_todo,
    delete_todo,
    get_todo,
    read_stats,
    update_todo,
)
from todo_common.db import create_engine, create_sessionmaker
from todo_common.exceptions import TodoNotFound, VersionConflict
from todo_common.models import Todo, User, utcnow
from todo_common.settings import Settings


@pytest.fixture
async def engine(database_url: str) -> AsyncIterator[AsyncEngine]:
    engine = create_engine(Settings(database_url=database_url))
    yield engine
    await engine.dispose()


async def add_owner(engine: AsyncEngine) -> int:
    """A user row (no password hashing: these tests never log in)."""
    async with engine.begin() as connection:
        user_id = await connection.scalar(
            insert(User)
            .values(username=f"u-{uuid.uuid4().hex[:10]}", password_hash="-", created_at=utcnow())
            .returning(User.id)
        )
    assert user_id is not None
    return int(user_id)


async def add_todo(engine: AsyncEngine, owner_id: int, name: str = "buy") -> int:
    async with create_sessionmaker(engine).begin() as session:
        return await create_todo(session, owner_id=owner_id, name=name, task="groceries")


async def test_get_todo_is_scoped_to_its_owner(engine: AsyncEngine) -> None:
    owner, other = await add_owner(engine), await add_owner(engine)
    todo_id = await add_todo(engine, owner)

    async with engine.connect() as connection:
        mine = await get_todo(connection, owner_id=owner, todo_id=todo_id)
        theirs = await get_todo(connection, owner_id=other, todo_id=todo_id)
        missing = await get_todo(connection, owner_id=owner, todo_id=todo_id + 1000)

    assert mine is not None
    assert (mine.id, mine.name, mine.task, mine.version) == (todo_id, "buy", "groceries", 1)
    assert mine.created_at.tzinfo is not None
    assert (theirs, missing) == (None, None)


async def test_ids_are_keyword_only(engine: AsyncEngine) -> None:
    owner = await add_owner(engine)
    todo_id = await add_todo(engine, owner)

    async with engine.connect() as connection:
        with pytest.raises(TypeError):
            await get_todo(connection, owner, todo_id)  # type: ignore[misc]


async def test_update_bumps_the_version_and_returns_the_row(engine: AsyncEngine) -> None:
    owner = await add_owner(engine)
    todo_id = await add_todo(engine, owner)

    async with create_sessionmaker(engine).begin() as session:
        row = await update_todo(
            session, owner_id=owner, todo_id=todo_id, name="new", task="text", versions=[1]
        )

    assert (row.id, row.name, row.task, row.version) == (todo_id, "new", "text", 2)


@pytest.mark.parametrize("versions", [[1], [], [1, 3]], ids=["stale", "none", "others"])
async def test_update_with_a_version_not_current_raises_and_changes_nothing(
    engine: AsyncEngine, versions: list[int]
) -> None:
    owner = await add_owner(engine)
    todo_id = await add_todo(engine, owner)
    async with create_sessionmaker(engine).begin() as session:
        await update_todo(session, owner_id=owner, todo_id=todo_id, name="second", task="v2")

    with pytest.raises(VersionConflict) as raised:
        async with create_sessionmaker(engine).begin() as session:
            await update_todo(
                session, owner_id=owner, todo_id=todo_id, name="x", task="y", versions=versions
            )

    assert raised.value.todo_id == todo_id
    async with engine.connect() as connection:
        row = await get_todo(connection, owner_id=owner, todo_id=todo_id)
    assert row is not None and (row.name, row.version) == ("second", 2)


async def test_writes_to_another_owners_todo_raise_not_found(engine: AsyncEngine) -> None:
    owner, other = await add_owner(engine), await add_owner(engine)
    todo_id = await add_todo(engine, owner)
    maker = create_sessionmaker(engine)

    for versions in (None, "*", [1]):
        with pytest.raises(TodoNotFound):
            async with maker.begin() as session:
                await update_todo(
                    session, owner_id=other, todo_id=todo_id, name="x", task="y", versions=versions
                )
        with pytest.raises(TodoNotFound):
            async with maker.begin() as session:
                await delete_todo(session, owner_id=other, todo_id=todo_id, versions=versions)

    async with engine.connect() as connection:
        row = await get_todo(connection, owner_id=owner, todo_id=todo_id)
        assert row is not None and row.name == "buy"
        assert await count_todos(connection, owner_id=owner) == 1


async def test_delete_compare_and_sets_and_keeps_the_count(engine: AsyncEngine) -> None:
    owner = await add_owner(engine)
    todo_id = await add_todo(engine, owner)
    maker = create_sessionmaker(engine)

    with pytest.raises(VersionConflict):
        async with maker.begin() as session:
            await delete_todo(session, owner_id=owner, todo_id=todo_id, versions=[2])
    async with engine.connect() as connection:
        assert await count_todos(connection, owner_id=owner) == 1

    async with maker.begin() as session:
        await delete_todo(session, owner_id=owner, todo_id=todo_id, versions=[1])
    with pytest.raises(TodoNotFound):
        async with maker.begin() as session:
            await delete_todo(session, owner_id=owner, todo_id=todo_id)

    async with engine.connect() as connection:
        assert await get_todo(connection, owner_id=owner, todo_id=todo_id) is None
        assert await count_todos(connection, owner_id=owner) == 0
        stats = await read_stats(connection, owner_id=owner, top=5)
    assert (stats.todos, stats.hits, stats.most_viewed) == (0, 0, [])


async def test_concurrent_writers_of_one_version_exactly_one_wins(engine: AsyncEngine) -> None:
    owner = await add_owner(engine)
    todo_id = await add_todo(engine, owner)
    maker = create_sessionmaker(engine)

    async def write(i: int) -> str:
        try:
            async with maker.begin() as session:
                await update_todo(
                    session, owner_id=owner, todo_id=todo_id, name=f"w{i}", task="t", versions=[1]
                )
        except VersionConflict:
            return "conflict"
        return "won"

    outcomes = await asyncio.gather(*(write(i) for i in range(8)))

    assert sorted(outcomes) == ["conflict"] * 7 + ["won"]
    async with engine.connect() as connection:
        row = await get_todo(connection, owner_id=owner, todo_id=todo_id)
    assert row is not None and row.version == 2


async def test_a_deleted_todos_id_is_never_handed_out_again(engine: AsyncEngine) -> None:
    """Tags are (id, version): they are strong only if a new todo never gets an old id (SQLite's
    table is AUTOINCREMENT, PostgreSQL's a sequence), even when the highest id was deleted."""
    owner = await add_owner(engine)
    first = await add_todo(engine, owner)
    async with create_sessionmaker(engine).begin() as session:
        await delete_todo(session, owner_id=owner, todo_id=first)

    second = await add_todo(engine, owner)

    assert second > first
    assert todo_tag(second, 1) != todo_tag(first, 1)
    async with engine.connect() as connection:
        assert (await connection.execute(select(Todo.id))).scalars().all() == [second]
