"""Fixed-window rate limiting in Redis, atomic across API replicas.

`RateLimiter.count(*identities)` spends one request from each identity's window, in order, in one
Lua script (one round trip): each counter is incremented and its window started (with an expiry,
so keys never pile up) on its first request, and the script stops at the first window over the
limit, so later ones are left unspent. Counting and answering are one atomic step: however many
requests arrive at once, exactly LIMIT of them per window find themselves within it. There is no
"peek": a check that does not count is a race.

Redis errors reach the caller as `RedisUnavailable` or `RedisBusy` (see `todo_api.redis_client`);
what to do about them is the caller's policy (see `todo_api.access`).
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass

from todo_api.redis_client import RedisClient
from todo_common.settings import RateLimit

# KEYS: the windows, in order; ARGV[1] window in ms, ARGV[2] limit. Returns {count, ms left} for
# each window counted. PTTL < 0 covers a new key and one that lost its expiry.
_COUNT_SCRIPT = """
local counted = {}
for _, key in ipairs(KEYS) do
  local count = redis.call('INCR', key)
  local ttl = redis.call('PTTL', key)
  if ttl < 0 then
    redis.call('PEXPIRE', key, ARGV[1])
    ttl = tonumber(ARGV[1])
  end
  counted[#counted + 1] = count
  counted[#counted + 1] = ttl
  if count > tonumber(ARGV[2]) then break end
end
return counted
"""


@dataclass(frozen=True)
class Window:
    """One identity's window after this request was counted in it."""

    limit: int
    count: int
    reset_at: int  # UTC epoch seconds
    retry_after: int  # seconds until the window ends

    @property
    def exceeded(self) -> bool:
        return self.count > self.limit

    @property
    def remaining(self) -> int:
        return max(0, self.limit - self.count)

    def headers(self) -> dict[str, str]:
        headers = {
            "X-RateLimit-Limit": str(self.limit),
            "X-RateLimit-Remaining": str(self.remaining),
            "X-RateLimit-Reset": str(self.reset_at),
        }
        if self.exceeded:
            headers["Retry-After"] = str(self.retry_after)
        return headers


class RateLimiter:
    def __init__(self, redis: RedisClient, rule: RateLimit) -> None:
        self.redis = redis
        self.rule = rule

    async def count(self, *identities: str) -> Window:
        """Spend one request of each identity's window, stopping at the first one exceeded.

        Returns that exceeded window, else the one with the least left."""
        result = await self.redis.run_script(
            _COUNT_SCRIPT,
            keys=[self.redis.key("rl", identity) for identity in identities],
            args=[self.rule.period * 1000, self.rule.limit],
        )
        now = time.time()
        windows = [
            self._window(int(count), int(ttl_ms), now)
            for count, ttl_ms in zip(result[::2], result[1::2], strict=True)
        ]
        return min(windows, key=lambda window: (not window.exceeded, window.remaining))

    def _window(self, count: int, ttl_ms: int, now: float) -> Window:
        ttl_ms = max(ttl_ms, 0)
        return Window(
            limit=self.rule.limit,
            count=count,
            reset_at=math.ceil(now + ttl_ms / 1000),
            retry_after=max(1, math.ceil(ttl_ms / 1000)),
        )
