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
from collections.abc import Sequence
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
    "Requests that found Redis unavailable, by feature. They are served without the feature "
    "(fail open), except on the token route, which answers 503 (rate_limit fails closed there).",
    ["feature"],
)

# KEYS[1] counter; ARGV[1] window in ms. PTTL < 0 covers a new key and one that lost its expiry.
# With KEYS[2] (pending hits), KEYS[3] (flush-requested flag), ARGV[2] (limit), ARGV[3] (field)
# and ARGV[4] (threshold), a request within the limit also counts its view; the third value is
# then count_hit's result (1: ask for an early flush, 0: don't), else -1 (no view counted).
_HIT_SCRIPT = (
    COUNT_HIT_LUA
    + """
local count = redis.call('INCR', KEYS[1])
local ttl = redis.call('PTTL', KEYS[1])
if ttl < 0 then
  redis.call('PEXPIRE', KEYS[1], ARGV[1])
  ttl = tonumber(ARGV[1])
end
local view = -1
if KEYS[2] and count <= tonumber(ARGV[2]) then
  view = count_hit(KEYS[2], KEYS[3], ARGV[3], 1, tonumber(ARGV[4]))
end
return {count, ttl, view}
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
class ViewKeys:
    """What counting one view of a todo needs (see `todo_api.hits.HitCounter.view_keys`)."""

    pending: str
    flag: str
    field: str
    threshold: int


@dataclass(frozen=True)
class WindowState:
    limit: int
    remaining: int
    reset_at: int  # UTC epoch seconds
    retry_after: int  # seconds until the window ends
    exceeded: bool
    # Whether the request's view of a todo was counted with it, and whether that view should
    # ask for an early flush (see todo_api.hits).
    view_counted: bool = False
    flush_wanted: bool = False

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

    def __init__(self, feature: str, exception: str | None = None) -> None:
        self.feature = feature
        self.exception = exception  # where the feature fails closed instead, for the log
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
            log.warning(
                "redis unavailable; failing open",
                feature=self.feature,
                error=str(error),
                **({"fails_closed": self.exception} if self.exception else {}),
            )


class RateLimiter:
    def __init__(self, redis: Redis, rule: RateLimit) -> None:
        self.redis = redis
        self.rule = rule
        self.fail_open = FailOpen("rate_limit", exception="/auth/request-token answers 503")
        self._scripts: dict[str, AsyncScript] = {}

    async def _run(
        self, source: str, identity: str, *args: int | str, view_keys: Sequence[str] = ()
    ) -> list[int] | None:
        """Run a script on `identity`'s counter; None when Redis is unavailable (fail open)."""
        client = self.redis.client
        if client is None or self.fail_open.is_down():
            self.fail_open.record(None)
            return None
        script = self._scripts.get(source)
        if script is None:
            script = self._scripts[source] = client.register_script(source)
        keys = [self.redis.key("rl", identity), *view_keys]
        try:
            result = await script(keys=keys, args=list(args))
        except (RedisError, OSError) as error:
            self.fail_open.record(error)
            return None
        return [int(value) for value in result]

    def _state(self, count: int, ttl_ms: int, exceeded: bool, view: int = -1) -> WindowState:
        ttl_ms = max(ttl_ms, 0)
        return WindowState(
            limit=self.rule.limit,
            remaining=max(0, self.rule.limit - count),
            reset_at=math.ceil(time.time() + ttl_ms / 1000),
            retry_after=max(1, math.ceil(ttl_ms / 1000)),
            exceeded=exceeded,
            view_counted=view >= 0,
            flush_wanted=view == 1,
        )

    async def hit(self, identity: str, view: ViewKeys | None = None) -> WindowState | None:
        """Count one request for `identity`, and the view if given and the request is within
        the limit; None when Redis is unavailable (fail open)."""
        args: list[int | str] = [self.rule.period * 1000]
        keys: list[str] = []
        if view is not None:
            keys = [view.pending, view.flag]
            args += [self.rule.limit, view.field, view.threshold]
        result = await self._run(_HIT_SCRIPT, identity, *args, view_keys=keys)
        if result is None:
            return None
        count, ttl_ms, view_result = result
        return self._state(count, ttl_ms, count > self.rule.limit, view_result)

    async def peek(self, identity: str) -> WindowState | None:
        """`identity`'s window without counting; `exceeded` once its budget is spent."""
        result = await self._run(_PEEK_SCRIPT, identity)
        if result is None:
            return None
        count, ttl_ms = result[:2]
        return self._state(count, ttl_ms, exceeded=count >= self.rule.limit)
