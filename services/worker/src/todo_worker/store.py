"""Data functions of the worker: applying hit batches and forgetting old batch ids."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import datetime
from typing import cast

from sqlalchemy import BigInteger, Table, bindparam, delete, select
from sqlalchemy.ext.asyncio import AsyncSession

from todo_common.db import dialect_insert
from todo_common.models import HitBatch, Todo, TodoHits, utcnow

CHUNK = 1000
HITS = cast(Table, TodoHits.__table__)
BATCHES = cast(Table, HitBatch.__table__)


def _chunks(rows: list[dict[str, int]]) -> Iterable[list[dict[str, int]]]:
    for start in range(0, len(rows), CHUNK):
        yield rows[start : start + CHUNK]


async def apply_batch(
    session: AsyncSession, batch_id: str, counts: Mapping[tuple[int, int], int]
) -> bool:
    """Add a batch's counts (keyed by (owner id, todo id)) unless the batch was applied before.

    Returns False when it had been. Call inside a transaction: the batch id and the counts commit
    together or not at all. Counts for todos that no longer exist, or that do not belong to the
    owner the hit was counted for, are dropped.
    """
    insert = dialect_insert(session)
    recorded = await session.scalar(
        insert(BATCHES)
        .values(id=batch_id, applied_at=utcnow())
        .on_conflict_do_nothing(index_elements=["id"])
        .returning(BATCHES.c.id)
    )
    if recorded is None:
        return False
    # One statement for every row, in todo id order: concurrent flushes lock rows in the same
    # order (no deadlock). The API only ever adds views; a count that is not positive (from no
    # version of ours since views stopped being taken back) is dropped, not applied.
    rows = [{"o": owner, "t": todo, "n": n} for (owner, todo), n in counts.items() if n > 0]
    rows.sort(key=lambda row: (row["t"], row["o"]))
    n = bindparam("n", type_=BigInteger)
    upsert = insert(HITS).from_select(
        ["todo_id", "owner_id", "hits"],
        select(Todo.id, Todo.owner_id, n).where(
            Todo.id == bindparam("t"), Todo.owner_id == bindparam("o")
        ),
    )
    upsert = upsert.on_conflict_do_update(
        index_elements=["todo_id"], set_={"hits": HITS.c.hits + upsert.excluded.hits}
    )
    connection = await session.connection()
    for chunk in _chunks(rows):
        await connection.execute(upsert, chunk)
    return True


async def forget_applied_batches(
    session: AsyncSession, applied_before: datetime, still_open: Iterable[str]
) -> int:
    """Delete the ids of batches applied before `applied_before`, except those still open in
    Redis (a flush must still find those recorded); returns how many were deleted."""
    statement = delete(BATCHES).where(BATCHES.c.applied_at < applied_before)
    keep = list(still_open)
    if keep:
        statement = statement.where(BATCHES.c.id.not_in(keep))
    result = await session.execute(statement)
    return int(result.rowcount or 0)  # type: ignore[attr-defined]
