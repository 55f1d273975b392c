"""Counting views of todos: each successful GET of a todo (a 200 or a 304; HEAD is not a view) adds
a hit for the worker to flush into the database (`todo_common.hits` has the hand-over).

The request path makes no Redis call for it: views are added to a buffer in the process, and a
background task sends the buffer in one call (`ADD_VIEWS_SCRIPT`) every `SEND_EVERY_SECONDS`, or
as soon as `SEND_AT_VIEWS` views wait. Only views that happened are sent, so no count is ever
taken back and no field is written for a 404. The buffer is sent once more when the app stops
serving, after its last request (graceful shutdown).

What can be lost: the views of the last `SEND_EVERY_SECONDS` before the process is killed
(SIGKILL, a crash, the OOM killer). While Redis is down, views wait in the buffer and are sent
when it returns; a buffer that already holds `MAX_BUFFERED_TODOS` todos drops views of new ones
(counted in `todo_redis_failures_total{feature="hits"}`). A batch whose call failed is sent
again as it was, and Redis adds it once even when it ran the call that timed out.

When TODO_HITS_FLUSH_THRESHOLD todos or more have hits waiting in Redis, one sender (a flag in
Redis picks it) asks the worker for an early flush; this bounds Redis memory between the
scheduler's flushes.
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid

import structlog
from quart import Quart

from todo_api.access import REDIS_FAILURES
from todo_api.redis_client import RedisClient
from todo_common.celery_app import FLUSH_HIT_COUNTS, REQUEST_ID_HEADER, create_celery
from todo_common.degraded import Degraded
from todo_common.exceptions import RedisBusy, RedisUnavailable
from todo_common.hits import ADD_VIEWS_SCRIPT, HitKeys, hit_field
from todo_common.settings import Settings

log = structlog.get_logger(__name__)

HITS = "todo.hits"
SEND_EVERY_SECONDS = 0.1
SEND_AT_VIEWS = 1000
MAX_BUFFERED_TODOS = 100_000


class HitCounter:
    def __init__(self, redis: RedisClient, settings: Settings) -> None:
        self.redis = redis
        self.keys = HitKeys(settings.redis_key_prefix)
        self.threshold = settings.hits_flush_threshold
        self.send_every = SEND_EVERY_SECONDS
        self.celery = create_celery(settings, main="todo-api")
        self.down = Degraded(
            "hits", "redis unavailable; views wait in the process", backoff=1.0, log_every=10.0
        )
        self._buffer: dict[str, int] = {}
        self._views = 0
        # The batch a failed call sent (its number, its views), to send again as it was.
        self._unsure: tuple[int, dict[str, int]] | None = None
        self._batches = 0
        self._sender_key = self.keys.sender(uuid.uuid4().hex)
        self._last_request_id: str | None = None
        self._wake = asyncio.Event()
        self._stopping = False
        self._sender: asyncio.Task[None] | None = None

    def init_app(self, app: Quart) -> None:
        app.extensions[HITS] = self
        app.before_serving(self.start)
        app.after_serving(self.stop)

    def count(self, owner_id: int, todo_id: int, request_id: str | None = None) -> None:
        """Add one view to the buffer (no I/O)."""
        field = hit_field(owner_id, todo_id)
        if field not in self._buffer and len(self._buffer) >= MAX_BUFFERED_TODOS:
            REDIS_FAILURES.labels("hits").inc()
            return
        self._buffer[field] = self._buffer.get(field, 0) + 1
        self._views += 1
        self._last_request_id = request_id
        if self._views >= SEND_AT_VIEWS:
            self._wake.set()

    async def start(self) -> None:
        self._sender = asyncio.create_task(self._send_periodically())

    async def stop(self) -> None:
        """Send what is buffered, after the last request (the app stops serving)."""
        self._stopping = True
        self._wake.set()
        if self._sender is not None:
            await self._sender

    async def _send_periodically(self) -> None:
        while not self._stopping:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), self.send_every)
            self._wake.clear()
            await self.send()
        await self.send()

    async def send(self) -> None:
        """Send the buffer in one call. A call that failed is sent again as it was, under the
        same batch number, before anything newer: it may have failed after Redis ran it (a
        reply timeout), and the script adds a batch number only once."""
        for _ in range(2):  # the batch of a failed call, if any, then the buffer
            if self._unsure is None and not self._buffer:
                return
            if self.down.is_down() and not self._stopping:
                return
            if self._unsure is None:
                self._batches += 1
                self._unsure = (self._batches, self._buffer)
                self._buffer, self._views = {}, 0
            number, batch = self._unsure
            request_id = self._last_request_id
            args: list[str | int] = [self.threshold, number]
            for field, views in batch.items():
                args += [field, views]
            try:
                flush_wanted = await self.redis.run_script(
                    ADD_VIEWS_SCRIPT,
                    keys=[self.keys.pending, self.keys.flush_requested, self._sender_key],
                    args=args,
                )
            except (RedisUnavailable, RedisBusy) as error:
                REDIS_FAILURES.labels("hits").inc()
                self.down.record(error, buffered_todos=len(self._buffer) + len(batch))
                return
            self._unsure = None
            if flush_wanted:
                await self._ask_for_flush(request_id)

    async def _ask_for_flush(self, request_id: str | None) -> None:
        # Celery's publisher blocks on the network, so it runs off the event loop.
        headers = {REQUEST_ID_HEADER: request_id} if request_id else {}
        try:
            await asyncio.to_thread(
                self.celery.send_task, FLUSH_HIT_COUNTS, headers=headers, retry=False
            )
        except Exception as error:  # the scheduler's next flush does the work anyway
            log.warning("could not ask for an early flush", error=str(error))
        else:
            log.info("asked for an early flush", request_id=request_id, threshold=self.threshold)


def hit_counter(app: Quart) -> HitCounter | None:
    counter: HitCounter | None = app.extensions.get(HITS)
    return counter
