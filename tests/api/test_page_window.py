"""The page window in process: `Page.window` (todo_api.pagination) and `store.list_todo_ids` on
real PostgreSQL and SQLite databases. Every page number, size and cursor selects exactly the
slice of the owner's todos (in id order) a client expects, whichever end it is read from."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from tests.api.test_store import add_owner, add_todo
from todo_api.pagination import Page
from todo_api.store import Window, count_todos, list_todo_ids
from todo_common.db import create_engine
from todo_common.settings import Settings

TOTAL = 23


@pytest.fixture
async def engine(database_url: str) -> AsyncIterator[AsyncEngine]:
    engine = create_engine(Settings(database_url=database_url))
    yield engine
    await engine.dispose()


@pytest.fixture
async def owned(engine: AsyncEngine) -> tuple[int, list[int]]:
    """An owner with TOTAL todos, interleaved with another owner's (which must never show)."""
    owner, other = await add_owner(engine), await add_owner(engine)
    ids = []
    for i in range(TOTAL):
        ids.append(await add_todo(engine, owner, name=f"t{i}"))
        if i % 3 == 0:
            await add_todo(engine, other)
    return owner, ids


async def window_ids(engine: AsyncEngine, owner: int, page: Page) -> tuple[int, list[int]]:
    """What the list route does: the total first only for a bare page past the first."""
    async with engine.connect() as connection:
        total = await count_todos(connection, owner_id=owner) if page.needs_total_first else None
        return await list_todo_ids(connection, owner_id=owner, window=page.window(total))


async def test_every_page_number_is_the_expected_slice(
    engine: AsyncEngine, owned: tuple[int, list[int]]
) -> None:
    owner, ids = owned
    for size in (1, 4, 7, 10, 23, 30):
        pages = -(-TOTAL // size)
        for number in range(1, pages + 3):  # two past the end: empty pages
            total, found = await window_ids(engine, owner, Page(number, size))
            assert total == TOTAL
            assert found == ids[(number - 1) * size : number * size], (size, number)


async def test_cursors_select_the_neighbouring_page(
    engine: AsyncEngine, owned: tuple[int, list[int]]
) -> None:
    owner, ids = owned
    size = 5
    for k, cursor in enumerate(ids):
        _, after = await window_ids(engine, owner, Page(2, size, after=cursor))
        _, before = await window_ids(engine, owner, Page(2, size, before=cursor))
        assert after == ids[k + 1 : k + 1 + size]
        assert before == ids[max(k - size, 0) : k]


async def test_after_and_before_together_bound_a_range(
    engine: AsyncEngine, owned: tuple[int, list[int]]
) -> None:
    owner, ids = owned

    _, found = await window_ids(engine, owner, Page(1, 4, after=ids[3], before=ids[15]))
    _, narrow = await window_ids(engine, owner, Page(1, 10, after=ids[3], before=ids[6]))
    _, empty = await window_ids(engine, owner, Page(1, 10, after=ids[6], before=ids[3]))

    assert found == ids[11:15]  # the page just before `before`
    assert narrow == ids[4:6]
    assert empty == []


async def test_an_owner_without_todos_has_a_total_of_zero(engine: AsyncEngine) -> None:
    owner = await add_owner(engine)
    async with engine.connect() as connection:
        assert await list_todo_ids(connection, owner_id=owner, window=Window(limit=10)) == (0, [])
        far = Window(limit=10, skip=5, from_end=True)
        assert await list_todo_ids(connection, owner_id=owner, window=far) == (0, [])


def test_a_deep_bare_page_is_read_from_the_nearer_end() -> None:
    assert Page(1, 10).window() == Window(limit=10)
    assert Page(2, 10).window(total=100) == Window(limit=10, skip=10)
    # Page 9 of 10: one page after it, so skip that from the end rather than 80 rows.
    assert Page(9, 10).window(total=100) == Window(limit=10, skip=10, from_end=True)
    # The last, partial page: 5 todos, none after it.
    assert Page(3, 10).window(total=25) == Window(limit=5, skip=0, from_end=True)
    # Beyond the end: nothing.
    assert Page(5, 10).window(total=25).limit == 0
