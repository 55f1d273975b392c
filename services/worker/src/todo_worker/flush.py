"""The hand-over of hit counts from Redis to the database (see `todo_common.hits` for the design).

`flush_hit_counts` may run twice at once, or be killed at any line and run again: each batch is
claimed atomically in Redis, applied once in the database (its id recorded in the same
transaction), and only then forgotten in Redis.

Database work runs inside `translate_database_errors()`: a database that cannot serve now raises
`DatabaseUnavailable` (the batch stays open in Redis, applied by the retry or the next flush).
"""

from __future__ import annotations

import asyncio
import time
import uuid
from dataclasses import dataclass
from datetime import timedelta

import redis.asyncio as aioredis
import structlog
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from todo_common.db import translate_database_errors
from todo_common.hits import CLAIM_SCRIPT, FORGET_SCRIPT, HitKeys, parse_hit_field
from todo_common.models import utcnow
from todo_common.settings import Settings
from todo_worker.store import apply_batch, forget_applied_batches

log = structlog.get_logger(__name__)

# Applied batch ids are kept this long; a flush that retries a batch always does so much sooner.
BATCH_ID_RETENTION = timedelta(days=7)


@dataclass
class FlushReport:
    batches: int = 0  # batches applied by this flush
    already_applied: int = 0  # open batches found applied (a flush died before forgetting them)
    hits: int = 0
    todos: int = 0


def new_batch_id() -> str:
    """Unique, and ordered by creation time so leftovers are applied oldest first."""
    return f"{time.time_ns():020d}-{uuid.uuid4().hex[:12]}"


class HitFlusher:
    def __init__(
        self,
        redis: aioredis.Redis,
        sessions: async_sessionmaker[AsyncSession],
        settings: Settings,
    ) -> None:
        self.redis = redis
        self.sessions = sessions
        self.settings = settings
        self.keys = HitKeys(settings.redis_key_prefix)

    async def flush(self) -> FlushReport:
        report = FlushReport()
        for batch_id in sorted(await self._open_batches()):
            await self._apply_and_forget(batch_id, report)
        batch_id = new_batch_id()
        keys = [
            self.keys.pending,
            self.keys.batch(batch_id),
            self.keys.open_batches,
            self.keys.flush_requested,
        ]
        if await self.redis.eval(CLAIM_SCRIPT, len(keys), *keys, batch_id):
            await self._pause_for_test("claimed")
            await self._apply_and_forget(batch_id, report)
        return report

    async def _apply_and_forget(self, batch_id: str, report: FlushReport) -> None:
        counts: dict[tuple[int, int], int] = {}
        for field, value in (await self.redis.hgetall(self.keys.batch(batch_id))).items():
            key = parse_hit_field(str(field))
            if key is not None:
                counts[key] = int(value)
        async with translate_database_errors(), self.sessions() as session, session.begin():
            applied = await apply_batch(session, batch_id, counts)
        if applied:
            report.batches += 1
            report.hits += sum(counts.values())
            report.todos += len(counts)
        else:
            report.already_applied += 1
        await self._pause_for_test("applied")
        keys = [self.keys.batch(batch_id), self.keys.open_batches]
        await self.redis.eval(FORGET_SCRIPT, len(keys), *keys, batch_id)

    async def _open_batches(self) -> set[str]:
        return {str(batch_id) for batch_id in await self.redis.smembers(self.keys.open_batches)}

    async def forget_old_batches(self) -> int:
        still_open = await self._open_batches()
        async with translate_database_errors(), self.sessions() as session, session.begin():
            return await forget_applied_batches(session, utcnow() - BATCH_ID_RETENTION, still_open)

    async def _pause_for_test(self, stage: str) -> None:
        if self.settings.test_pause_flush_at == stage:
            log.warning("flush paused for a test", stage=stage)
            await asyncio.sleep(self.settings.test_pause_seconds)
