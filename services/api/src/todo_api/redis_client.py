"""The API's Redis client: one pipelined connection per process (`todo_api.resp`), a bound on
the commands in flight, and Redis errors translated once.

At most TODO_REDIS_POOL_SIZE commands are in flight per process; a request that finds that many
waits for room (up to `_IN_FLIGHT_WAIT_SECONDS`) instead of failing at once. Every error leaves
this module as one of two exceptions of `todo_common.exceptions`, because the features above treat
them differently:

- `RedisUnavailable`: Redis is down, unreachable or does not answer (refused, reset, no reply in
  TODO_REDIS_TIMEOUT), or answered with an error. Features fail open on it.
- `RedisBusy`: Redis answers, but this process had no room for one more command in time: the
  process is overloaded, not Redis. The rate limiter fails closed on it, so a flood cannot turn
  it off. While Redis is known to be failing (`recently_down`), a full pipeline means requests
  are stuck on the outage, and it counts as unavailable instead.
"""

from __future__ import annotations

import asyncio
import hashlib
import time
from collections.abc import Sequence
from typing import Any

from quart import Quart

from todo_api.resp import ReplyError, RespClient
from todo_common.exceptions import RedisBusy, RedisUnavailable
from todo_common.settings import Settings

# How long an answer counts as evidence that Redis is failing (see `RedisBusy`).
_DOWN_EVIDENCE_SECONDS = 5.0
# A request waits this long for room in the pipeline: a flood queues here, in order, and only a
# wait this long says we are overloaded.
_IN_FLIGHT_WAIT_SECONDS = 3.0
# Connecting to a Redis that is up takes well under a millisecond; refusing is instant.
_CONNECT_TIMEOUT_SECONDS = 0.5

_REDIS = "todo.redis"


class RedisClient:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.prefix = settings.redis_key_prefix
        self._client: RespClient | None = None
        self._in_flight = asyncio.Semaphore(settings.redis_pool_size)
        self._shas: dict[str, str] = {}
        self._failed_at = -_DOWN_EVIDENCE_SECONDS

    def init_app(self, app: Quart) -> None:
        app.extensions[_REDIS] = self
        app.before_serving(self.open)
        app.after_serving(self.close)

    async def open(self) -> None:
        assert self.settings.redis_url
        self._client = RespClient(
            self.settings.redis_url,
            connect_timeout=_CONNECT_TIMEOUT_SECONDS,
            reply_timeout=self.settings.redis_timeout,
        )

    async def close(self) -> None:
        if self._client is not None:
            await self._client.close()

    def key(self, *parts: str | int) -> str:
        return self.prefix + ":".join(str(part) for part in parts)

    @property
    def recently_down(self) -> bool:
        return time.monotonic() - self._failed_at < _DOWN_EVIDENCE_SECONDS

    async def run_script(self, source: str, keys: Sequence[str], args: Sequence[Any]) -> Any:
        """Run a Lua script (by its SHA; sent whole when Redis does not know it); Redis errors
        come out translated."""
        if self._client is None:
            raise RedisUnavailable("the Redis client is not open")
        sha = self._shas.get(source)
        if sha is None:
            sha = self._shas[source] = hashlib.sha1(
                source.encode(), usedforsecurity=False
            ).hexdigest()
        await self._room()
        try:
            try:
                return await self._client.execute("EVALSHA", sha, len(keys), *keys, *args)
            except ReplyError as error:
                if not str(error).startswith("NOSCRIPT"):
                    raise
                return await self._client.execute("EVAL", source, len(keys), *keys, *args)
        except (ReplyError, OSError) as error:  # ConnectionError and TimeoutError are OSErrors
            raise self._down(error) from error
        finally:
            self._in_flight.release()

    async def _room(self) -> None:
        if not self._in_flight.locked():
            await self._in_flight.acquire()  # room: returns at once
            return
        try:
            async with asyncio.timeout(_IN_FLIGHT_WAIT_SECONDS):
                await self._in_flight.acquire()
        except TimeoutError:
            raise self._busy() from None

    def _down(self, error: Exception) -> RedisUnavailable:
        self._failed_at = time.monotonic()
        return RedisUnavailable(str(error) or type(error).__name__)

    def _busy(self) -> RedisUnavailable | RedisBusy:
        if self.recently_down:
            return RedisUnavailable("no room for a Redis command while Redis fails")
        return RedisBusy(
            f"{self.settings.redis_pool_size} Redis commands stayed in flight for"
            f" {_IN_FLIGHT_WAIT_SECONDS:g}s"
        )


def redis_of(app: Quart) -> RedisClient | None:
    client: RedisClient | None = app.extensions.get(_REDIS)
    return client
