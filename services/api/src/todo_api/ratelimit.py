"""Fixed-window rate limiting in Redis, atomic across API replicas.

One round trip per request: a Lua script increments the caller's counter, starts its window (with
an expiry, so keys never pile up) on the first hit, and returns the count and the time left. When
the request views a todo, the same script also counts the view (see `todo_api.hits`), so rate
limiting and hit counting together still cost one round trip. When
Redis cannot be reached the request is let through (fail open), a metric counts it and a warning is
logged at most every few seconds; a short back-off avoids paying a timeout on every request.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass

import structlog
from prometheus_client import Counter
from redis.commands.core import AsyncScript
from redis.exceptions import RedisError

from todo_api.resources import Redis
from todo_common.hits import COUNT_HIT_LUA
from todo_common.settings import RateLimit

log = structlog.get_logger(__name__)

REDIS_FAILURES = Counter(
    "todo_redis_failures_total",
    "Requests served without Redis because it failed (the feature failed open).",
    ["feature"],
)

# KEYS[1] counter; ARGV[1] window in ms. PTTL < 0 covers a new key and one that lost its expiry.
# With KEYS[2] (pending hits), ARGV[2] (limit) and ARGV[3] (field), a request within the limit
# also counts its view; the third value is then the count_hit result, else -1.
_HIT_SCRIPT = (
    COUNT_HIT_LUA
    + """
local count = redis.call('INCR', KEYS[1])
local ttl = redis.call('PTTL', KEYS[1])
if ttl < 0 then
  redis.call('PEXPIRE', KEYS[1], ARGV[1])
  ttl = tonumber(ARGV[1])
end
local waiting = -1
if KEYS[2] and count <= tonumber(ARGV[2]) then
  waiting = count_hit(KEYS[2], ARGV[3], 1)
end
return {count, ttl, waiting}
"""
)

# KEYS[1] counter. Reads the window without counting: {count, ms left} ({0, 0} if none).
_PEEK_SCRIPT = """
local count = tonumber(redis.call('GET', KEYS[1]) or '0')
local ttl = redis.call('PTTL', KEYS[1])
return {count, ttl}
"""

_BACKOFF_SECONDS = 1.0
_LOG_EVERY_SECONDS = 10.0


@dataclass(frozen=True)
class WindowState:
    limit: int
    remaining: int
    reset_at: int  # UTC epoch seconds
    retry_after: int  # seconds until the window ends
    exceeded: bool
    # When a view was counted with the hit: how many todos had hits waiting (see todo_api.hits).
    views_waiting: int | None = None

    def headers(self) -> dict[str, str]:
        headers = {
            "X-RateLimit-Limit": str(self.limit),
            "X-RateLimit-Remaining": str(self.remaining),
            "X-RateLimit-Reset": str(self.reset_at),
        }
        if self.exceeded:
            headers["Retry-After"] = str(self.retry_after)
        return headers


class FailOpen:
    """Remembers a recent Redis failure so callers skip Redis briefly, and rate-limits the log."""

    def __init__(self, feature: str) -> None:
        self.feature = feature
        self._down_until = 0.0
        self._logged_at = -math.inf

    def is_down(self) -> bool:
        return time.monotonic() < self._down_until

    def record(self, error: Exception | None) -> None:
        now = time.monotonic()
        REDIS_FAILURES.labels(self.feature).inc()
        if error is not None:
            self._down_until = now + _BACKOFF_SECONDS
        if now - self._logged_at >= _LOG_EVERY_SECONDS:
            self._logged_at = now
            log.warning("redis unavailable; failing open", feature=self.feature, error=str(error))


class RateLimiter:
    def __init__(self, redis: Redis, rule: RateLimit) -> None:
        self.redis = redis
        self.rule = rule
        self.fail_open = FailOpen("rate_limit")
        self._scripts: dict[str, AsyncScript] = {}

    async def _run(
        self, source: str, identity: str, *args: int | str, view_key: str | None = None
    ) -> list[int] | None:
        """Run a script on `identity`'s counter; None when Redis is unavailable (fail open)."""
        client = self.redis.client
        if client is None or self.fail_open.is_down():
            self.fail_open.record(None)
            return None
        script = self._scripts.get(source)
        if script is None:
            script = self._scripts[source] = client.register_script(source)
        keys = [self.redis.key("rl", identity)]
        if view_key is not None:
            keys.append(view_key)
        try:
            result = await script(keys=keys, args=list(args))
        except (RedisError, OSError) as error:
            self.fail_open.record(error)
            return None
        return [int(value) for value in result]

    def _state(
        self, count: int, ttl_ms: int, exceeded: bool, views_waiting: int | None = None
    ) -> WindowState:
        ttl_ms = max(ttl_ms, 0)
        return WindowState(
            limit=self.rule.limit,
            remaining=max(0, self.rule.limit - count),
            reset_at=math.ceil(time.time() + ttl_ms / 1000),
            retry_after=max(1, math.ceil(ttl_ms / 1000)),
            exceeded=exceeded,
            views_waiting=views_waiting,
        )

    async def hit(self, identity: str, view: tuple[str, str] | None = None) -> WindowState | None:
        """Count one request for `identity`, and the view `(pending key, field)` if given and
        the request is within the limit; None when Redis is unavailable (fail open)."""
        args: list[int | str] = [self.rule.period * 1000]
        if view is not None:
            args += [self.rule.limit, view[1]]
        result = await self._run(
            _HIT_SCRIPT, identity, *args, view_key=view[0] if view is not None else None
        )
        if result is None:
            return None
        count, ttl_ms, waiting = result
        return self._state(
            count, ttl_ms, count > self.rule.limit, waiting if waiting >= 0 else None
        )

    async def peek(self, identity: str) -> WindowState | None:
        """`identity`'s window without counting; `exceeded` once its budget is spent."""
        result = await self._run(_PEEK_SCRIPT, identity)
        if result is None:
            return None
        count, ttl_ms = result[:2]
        return self._state(count, ttl_ms, exceeded=count >= self.rule.limit)
