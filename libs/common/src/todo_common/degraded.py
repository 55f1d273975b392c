"""A dependency that is failing: skip it for a short back-off, and warn at most every few seconds.

An outage under load would otherwise cost a timeout and write a warning on every request. Each
user of a dependency (the rate limiter, hit counting, the database error handler) keeps one
`Degraded` of its own, so each owns its failure policy; this only remembers and rate-limits.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from typing import Any

import structlog

log = structlog.get_logger(__name__)


class Degraded:
    """Remembers the last failure of one dependency, as seen by one feature.

    `record()` counts a failure; with `backoff` > 0, `is_down()` stays true that long after it,
    so the caller skips the dependency instead of waiting on it again. One warning is logged per
    `log_every` seconds, saying how many failures it stands for.
    """

    def __init__(
        self,
        feature: str,
        message: str,
        *,
        backoff: float = 0.0,
        log_every: float = 10.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.feature = feature
        self.message = message
        self.backoff = backoff
        self.log_every = log_every
        self._clock = clock
        self._down_until = -math.inf
        self._logged_at = -math.inf
        self._unlogged = 0

    def is_down(self) -> bool:
        return self._clock() < self._down_until

    def record(self, error: BaseException | None, **fields: Any) -> None:
        """A failure (`error` None: skipped during the back-off, nothing new learnt)."""
        now = self._clock()
        if error is not None and self.backoff > 0:
            self._down_until = now + self.backoff
        if now - self._logged_at < self.log_every:
            self._unlogged += 1
            return
        log.warning(
            self.message,
            feature=self.feature,
            error=(str(error) or type(error).__name__) if error is not None else None,
            error_type=type(error).__name__ if error is not None else None,
            not_logged_since_last=self._unlogged,
            **fields,
        )
        self._logged_at, self._unlogged = now, 0
