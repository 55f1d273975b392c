"""The API's Redis client: one bounded pool per process, and Redis errors translated once.

The pool holds at most TODO_REDIS_POOL_SIZE connections; a request that finds them all busy waits
for one (up to `_POOL_WAIT_SECONDS`) instead of failing at once, as redis-py's default pool does
("Too many connections"). Every error leaves this module as one of two exceptions of
`todo_common.exceptions`, because the features above treat them differently:

- `RedisUnavailable`: Redis is down, unreachable or does not answer (refused, reset, timed out
  on an open connection). Features fail open on it.
- `RedisBusy`: Redis answers, but no pooled connection came free in time: the process is
  overloaded, not Redis. The rate limiter fails closed on it, so a flood cannot turn it off.
  While Redis is known to be failing (`recently_down`), a full pool means requests are stuck on
  the outage, and it counts as unavailable instead.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from typing import Any

import redis.asyncio as aioredis
from quart import Quart
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.commands.core import AsyncScript
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import MaxConnectionsError, RedisError

from todo_common.exceptions import RedisBusy, RedisUnavailable
from todo_common.settings import Settings

# How long an answer counts as evidence that Redis is failing (see `RedisBusy`).
_DOWN_EVIDENCE_SECONDS = 5.0
# A request waits this long for a pooled connection: a flood queues here, in order, and only a
# wait this long says we are overloaded.
_POOL_WAIT_SECONDS = 3.0
# Connecting to a Redis that is up takes well under a millisecond; refusing is instant.
_CONNECT_TIMEOUT_SECONDS = 0.5

# One retry covers a pooled connection the server closed (a reset); a timeout is never retried,
# which would multiply the wait on a Redis that hangs.
_RETRY = Retry(NoBackoff(), 1, supported_errors=(RedisConnectionError,))

_REDIS = "todo.redis"


class RedisClient:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.prefix = settings.redis_key_prefix
        self._client: aioredis.Redis | None = None
        self._scripts: dict[str, AsyncScript] = {}
        self._failed_at = -_DOWN_EVIDENCE_SECONDS

    def init_app(self, app: Quart) -> None:
        app.extensions[_REDIS] = self
        app.before_serving(self.open)
        app.after_serving(self.close)

    async def open(self) -> None:
        assert self.settings.redis_url
        pool = aioredis.BlockingConnectionPool.from_url(
            self.settings.redis_url,
            max_connections=self.settings.redis_pool_size,
            timeout=_POOL_WAIT_SECONDS,
            socket_timeout=self.settings.redis_timeout,
            socket_connect_timeout=_CONNECT_TIMEOUT_SECONDS,
            health_check_interval=30,
            retry=_RETRY,
        )
        self._client = aioredis.Redis(connection_pool=pool, retry=_RETRY)

    async def close(self) -> None:
        if self._client is not None:
            await self._client.aclose()

    def key(self, *parts: str | int) -> str:
        return self.prefix + ":".join(str(part) for part in parts)

    @property
    def recently_down(self) -> bool:
        return time.monotonic() - self._failed_at < _DOWN_EVIDENCE_SECONDS

    async def run_script(self, source: str, keys: Sequence[str], args: Sequence[Any]) -> Any:
        """Run a Lua script (by its SHA, loaded on first use); Redis errors come out translated."""
        if self._client is None:
            raise RedisUnavailable("the Redis client is not open")
        script = self._scripts.get(source)
        if script is None:
            script = self._scripts[source] = self._client.register_script(source)
        try:
            return await script(keys=list(keys), args=list(args))
        except MaxConnectionsError as error:
            raise self._busy(error) from error
        except RedisConnectionError as error:
            if isinstance(error.__cause__, asyncio.TimeoutError):  # the pool's wait ran out
                raise self._busy(error) from error
            raise self._down(error) from error
        except (RedisError, OSError) as error:
            raise self._down(error) from error

    def _down(self, error: Exception) -> RedisUnavailable:
        self._failed_at = time.monotonic()
        return RedisUnavailable(str(error) or type(error).__name__)

    def _busy(self, error: Exception) -> RedisUnavailable | RedisBusy:
        if self.recently_down:
            return RedisUnavailable(f"no connection came free while Redis fails: {error}")
        return RedisBusy(f"no Redis connection came free in {_POOL_WAIT_SECONDS}s")


def redis_of(app: Quart) -> RedisClient | None:
    client: RedisClient | None = app.extensions.get(_REDIS)
    return client
