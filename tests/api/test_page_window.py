"""The page window in process: `Page.window` (todo_api.pagination) and `store.list_todo_ids` on
real PostgreSQL and SQLite databases. Every page number, size and cursor selects exactly the
slice of the owner's todos (in id order) a client expects, whichever end it is read from."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from tests.api.test_store import PV, add_owner, add_todo
from todo_api.pagination import Page
from todo_api.resources import Database
from todo_api.store import Window
from todo_common.settings import Settings

TOTAL = 23


@pytest.fixture
async def database(database_url: str) -> AsyncIterator[Database]:
    db = Database(Settings(database_url=database_url))
    await db.open()
    yield db
    await db.close()


@pytest.fixture
async def owned(database: Database) -> tuple[int, list[int]]:
    """An owner with TOTAL todos, interleaved with another owner's (which must never show)."""
    owner, other = await add_owner(database), await add_owner(database)
    ids = []
    for i in range(TOTAL):
        ids.append(await add_todo(database, owner, name=f"t{i}"))
        if i % 3 == 0:
            await add_todo(database, other)
    return owner, ids


async def window_ids(database: Database, owner: int, page: Page) -> tuple[int, list[int]]:
    """What the list route does: the total first only for a bare page past the first."""
    async with database.store() as store:
        total = None
        if page.needs_total_first:
            total = await store.count_todos(owner_id=owner, password_version=PV)
        return await store.list_todo_ids(
            owner_id=owner, password_version=PV, window=page.window(total)
        )


async def test_every_page_number_is_the_expected_slice(
    database: Database, owned: tuple[int, list[int]]
) -> None:
    owner, ids = owned
    for size in (1, 4, 7, 10, 23, 30):
        pages = -(-TOTAL // size)
        for number in range(1, pages + 3):  # two past the end: empty pages
            total, found = await window_ids(database, owner, Page(number, size))
            assert total == TOTAL
            assert found == ids[(number - 1) * size : number * size], (size, number)


async def test_cursors_select_the_neighbouring_page(
    database: Database, owned: tuple[int, list[int]]
) -> None:
    owner, ids = owned
    size = 5
    for k, cursor in enumerate(ids):
        _, after = await window_ids(database, owner, Page(2, size, after=cursor))
        _, before = await window_ids(database, owner, Page(2, size, before=cursor))
        assert after == ids[k + 1 : k + 1 + size]
        assert before == ids[max(k - size, 0) : k]


async def test_after_and_before_together_bound_a_range(
    database: Database, owned: tuple[int, list[int]]
) -> None:
    owner, ids = owned

    _, found = await window_ids(database, owner, Page(1, 4, after=ids[3], before=ids[15]))
    _, narrow = await window_ids(database, owner, Page(1, 10, after=ids[3], before=ids[6]))
    _, empty = await window_ids(database, owner, Page(1, 10, after=ids[6], before=ids[3]))

    assert found == ids[11:15]  # the page just before `before`
    assert narrow == ids[4:6]
    assert empty == []


async def test_an_owner_without_todos_has_a_total_of_zero(database: Database) -> None:
    owner = await add_owner(database)
    async with database.store() as store:
        for window in (Window(limit=10), Window(limit=10, skip=5, from_end=True)):
            found = await store.list_todo_ids(owner_id=owner, password_version=PV, window=window)
            assert found == (0, [])


def test_a_deep_bare_page_is_read_from_the_nearer_end() -> None:
    assert Page(1, 10).window() == Window(limit=10)
    assert Page(2, 10).window(total=100) == Window(limit=10, skip=10)
    # Page 9 of 10: one page after it, so skip that from the end rather than 80 rows.
    assert Page(9, 10).window(total=100) == Window(limit=10, skip=10, from_end=True)
    # The last, partial page: 5 todos, none after it.
    assert Page(3, 10).window(total=25) == Window(limit=5, skip=0, from_end=True)
    # Beyond the end: nothing.
    assert Page(5, 10).window(total=25).limit == 0
