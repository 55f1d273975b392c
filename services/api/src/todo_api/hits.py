"""Counting views of todos: each successful GET of a todo adds a hit in Redis for the worker to
flush into the database (`todo_common.hits` has the hand-over).

One Redis round trip per view: with rate limits on, the limiter's script counts the view in
advance (`RateLimiter.hit`), and the view is taken back if the GET then fails; without them, the
view is counted after the GET succeeded. When TODO_HITS_FLUSH_THRESHOLD todos or more have hits
waiting, one request (a flag in Redis picks it) asks the worker for an early flush, carrying its
request id; this bounds Redis memory between the scheduler's flushes. Redis being down
loses the hits of that time and nothing else (fail open).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

import structlog
from quart import Quart, current_app, g, request
from redis.commands.core import AsyncScript
from redis.exceptions import RedisError

from todo_api.ratelimit import FailOpen, ViewKeys
from todo_api.resources import Redis
from todo_common.celery_app import FLUSH_HIT_COUNTS, REQUEST_ID_HEADER, create_celery
from todo_common.hits import COUNT_SCRIPT, HitKeys, hit_field
from todo_common.settings import Settings

log = structlog.get_logger(__name__)

HITS = "todo.hits"


class HitCounter:
    def __init__(self, redis: Redis, settings: Settings) -> None:
        self.redis = redis
        self.keys = HitKeys(settings.redis_key_prefix)
        self.threshold = settings.hits_flush_threshold
        self.fail_open = FailOpen("hits")
        self.celery = create_celery(settings, main="todo-api")
        self._script: AsyncScript | None = None

    def init_app(self, app: Quart) -> None:
        app.extensions[HITS] = self

    def view_keys(self, owner_id: int, todo_id: int) -> ViewKeys:
        """What a view of this todo by its owner increments and checks."""
        return ViewKeys(
            self.keys.pending,
            self.keys.flush_requested,
            hit_field(owner_id, todo_id),
            self.threshold,
        )

    async def count(self, owner_id: int, todo_id: int, delta: int = 1) -> None:
        """Add `delta` hits (-1 takes back one counted in advance)."""
        client = self.redis.client
        if client is None or self.fail_open.is_down():
            self.fail_open.record(None)
            return
        if self._script is None:
            self._script = client.register_script(COUNT_SCRIPT)
        view = self.view_keys(owner_id, todo_id)
        try:
            flush_wanted = await self._script(
                keys=[view.pending, view.flag], args=[view.field, delta, view.threshold]
            )
        except (RedisError, OSError) as error:
            self.fail_open.record(error)
            return
        if flush_wanted:
            self.request_flush()

    def request_flush(self) -> None:
        """Ask the worker for a flush, after the response (the script chose this request)."""
        current_app.add_background_task(self._send_flush, g.request_id)

    async def _send_flush(self, request_id: str) -> None:
        # Celery's publisher blocks on the network, so it runs off the event loop.
        try:
            await asyncio.to_thread(
                self.celery.send_task,
                FLUSH_HIT_COUNTS,
                headers={REQUEST_ID_HEADER: request_id},
                retry=False,
            )
        except Exception as error:  # the scheduler's next flush does the work anyway
            log.warning("could not ask for an early flush", error=str(error))
        else:
            log.info("asked for an early flush", request_id=request_id, threshold=self.threshold)


def hit_counter(app: Quart) -> HitCounter | None:
    counter: HitCounter | None = app.extensions.get(HITS)
    return counter


@contextlib.asynccontextmanager
async def counting_view(owner_id: int, todo_id: int) -> AsyncIterator[None]:
    """Count the GET inside as a view of the todo if it succeeds (a 304 is a success too)."""
    counter = hit_counter(current_app)
    if counter is None or request.method != "GET":
        yield
        return
    counted_in_advance = g.get("view_counted", False)
    try:
        yield
    except BaseException:
        if counted_in_advance:
            await counter.count(owner_id, todo_id, -1)
        raise
    if not counted_in_advance:
        await counter.count(owner_id, todo_id)
