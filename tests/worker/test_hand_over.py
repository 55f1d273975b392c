"""The flush's hand-over, driven directly against real Redis and each database: concurrent
flushes, a batch applied but not yet forgotten, and counts that must be dropped."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import timedelta

import pytest
import redis.asyncio as aioredis
from sqlalchemy import insert, select, update

from tests.support.servers import free_port
from todo_common.db import create_engine, create_sessionmaker
from todo_common.exceptions import DatabaseUnavailable
from todo_common.hits import HitKeys, hit_field
from todo_common.models import HitBatch, Todo, TodoHits, User, utcnow
from todo_common.settings import Settings
from todo_worker.flush import HitFlusher, new_batch_id
from todo_worker.store import apply_batch


@dataclass
class Rig:
    flusher: HitFlusher
    redis: aioredis.Redis
    keys: HitKeys

    async def hit(self, owner: int, todo: int, times: int = 1) -> None:
        await self.redis.hincrby(self.keys.pending, hit_field(owner, todo), times)

    async def hits(self) -> dict[int, int]:
        async with self.flusher.sessions() as session:
            rows = await session.execute(select(TodoHits.todo_id, TodoHits.hits))
            return {todo: hits for todo, hits in rows.all()}

    async def add_todos(self, owner_name: str, count: int) -> tuple[int, list[int]]:
        async with self.flusher.sessions() as session, session.begin():
            owner = await session.scalar(
                insert(User)
                .values(username=owner_name, password_hash="-", created_at=utcnow())
                .returning(User.id)
            )
            todos = [
                await session.scalar(
                    insert(Todo)
                    .values(owner_id=owner, name="n", task="t", created_at=utcnow(), version=1)
                    .returning(Todo.id)
                )
                for _ in range(count)
            ]
        assert owner is not None
        return owner, [todo for todo in todos if todo is not None]


@pytest.fixture
async def rig(database_url: str, redis_url: str) -> AsyncIterator[Rig]:
    settings = Settings(
        database_url=database_url,
        redis_url=redis_url,
        redis_key_prefix=f"todo-test-{uuid.uuid4().hex[:8]}:",
    )
    engine = create_engine(settings)
    client = aioredis.Redis.from_url(redis_url, decode_responses=True)
    flusher = HitFlusher(client, create_sessionmaker(engine), settings)
    yield Rig(flusher, client, flusher.keys)
    keys = [key async for key in client.scan_iter(f"{settings.redis_key_prefix}*")]
    if keys:
        await client.delete(*keys)
    await client.aclose()
    await engine.dispose()


async def test_concurrent_flushes_apply_each_batch_once(rig: Rig) -> None:
    owner, (first, second) = await rig.add_todos("alice", 2)
    await rig.hit(owner, first, 3)
    # A batch a killed flush claimed but never applied:
    await rig.redis.rename(rig.keys.pending, rig.keys.batch("00-leftover"))
    await rig.redis.sadd(rig.keys.open_batches, "00-leftover")
    await rig.hit(owner, first, 2)
    await rig.hit(owner, second, 4)

    reports = await asyncio.gather(*(rig.flusher.flush() for _ in range(4)))

    assert await rig.hits() == {first: 5, second: 4}
    assert sum(report.hits for report in reports) == 9
    assert await rig.redis.smembers(rig.keys.open_batches) == set()
    assert await rig.redis.keys(f"{rig.flusher.settings.redis_key_prefix}*") == []


async def test_an_applied_batch_left_in_redis_is_forgotten_not_reapplied(rig: Rig) -> None:
    owner, (todo,) = await rig.add_todos("bob", 1)
    await rig.hit(owner, todo, 6)
    batch_id = new_batch_id()
    await rig.redis.rename(rig.keys.pending, rig.keys.batch(batch_id))
    await rig.redis.sadd(rig.keys.open_batches, batch_id)
    async with rig.flusher.sessions() as session, session.begin():  # applied, then "killed"
        assert await apply_batch(session, batch_id, {(owner, todo): 6})

    report = await rig.flusher.flush()

    assert (report.batches, report.already_applied) == (0, 1)
    assert await rig.hits() == {todo: 6}
    assert await rig.redis.smembers(rig.keys.open_batches) == set()


async def test_counts_for_missing_or_foreign_todos_are_dropped(rig: Rig) -> None:
    owner, (kept, deleted, unviewed) = await rig.add_todos("carol", 3)
    stranger, _ = await rig.add_todos("dave", 0)
    await rig.hit(owner, kept, 2)
    await rig.hit(owner, deleted, 5)
    await rig.hit(stranger, kept, 7)  # the stranger's hit field names carol's todo
    await rig.hit(owner, 10_000_000, 1)
    async with rig.flusher.sessions() as session, session.begin():
        await session.execute(Todo.__table__.delete().where(Todo.id == deleted))

    await rig.flusher.flush()
    assert await rig.hits() == {kept: 2}

    await rig.hit(owner, kept, -5)  # no version of the API sends these: dropped, not applied
    await rig.hit(owner, unviewed, -1)
    await rig.flusher.flush()
    assert await rig.hits() == {kept: 2}


async def test_cleanup_forgets_old_batch_ids_but_not_open_ones(rig: Rig) -> None:
    async with rig.flusher.sessions() as session, session.begin():
        for batch_id in ("old-closed", "old-open", "recent"):
            await session.execute(insert(HitBatch).values(id=batch_id, applied_at=utcnow()))
        await session.execute(
            update(HitBatch)
            .where(HitBatch.id.in_(["old-closed", "old-open"]))
            .values(applied_at=utcnow() - timedelta(days=30))
        )
    await rig.redis.sadd(rig.keys.open_batches, "old-open")

    assert await rig.flusher.forget_old_batches() == 1

    async with rig.flusher.sessions() as session:
        left = set(await session.scalars(select(HitBatch.id)))
    assert left == {"old-open", "recent"}


async def test_an_unreachable_database_leaves_the_batch_open(rig: Rig, postgres: str) -> None:
    """A flush whose database refuses connections raises `DatabaseUnavailable` (not a driver
    error) after claiming; the batch stays open in Redis and the next flush applies it."""
    owner, (todo,) = await rig.add_todos("alice", 1)
    await rig.hit(owner, todo, 4)
    refused = f"postgresql+asyncpg://postgres@127.0.0.1:{free_port()}/none"
    engine = create_engine(Settings(database_url=refused))
    broken = HitFlusher(rig.redis, create_sessionmaker(engine), rig.flusher.settings)
    try:
        with pytest.raises(DatabaseUnavailable):
            await broken.flush()
        with pytest.raises(DatabaseUnavailable):
            await broken.forget_old_batches()
    finally:
        await engine.dispose()
    assert await rig.redis.scard(rig.keys.open_batches) == 1

    report = await rig.flusher.flush()

    assert (report.batches, report.hits) == (1, 4)
    assert await rig.hits() == {todo: 4}
