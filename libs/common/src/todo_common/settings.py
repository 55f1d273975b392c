"""The one place configuration is read: every setting is a `TODO_*` environment variable.

`load_settings()` is what processes call at start-up; a bad value ends the process with a single
line naming the variable (`SettingsError`), never a traceback.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import StrEnum
from functools import cached_property
from pathlib import Path
from typing import Annotated, Literal
from urllib.parse import urlsplit

from pydantic import Field, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

DEV_SECRET_KEY = "dev-only-secret-key-do-not-use-in-production!"  # noqa: S105
MIN_PRODUCTION_SECRET_BYTES = 32

_RATE_RE = re.compile(
    r"^\s*(\d+)\s*/\s*(\d*)\s*(s|sec|second|seconds|m|min|minute|minutes|h|hour|hours)\s*$"
)
_UNIT_SECONDS = {"s": 1, "m": 60, "h": 3600}


class Environment(StrEnum):
    DEVELOPMENT = "development"
    PRODUCTION = "production"
    TEST = "test"


@dataclass(frozen=True)
class RateLimit:
    """`limit` requests per `period` seconds, parsed from strings like `5/15s` or `100/minute`."""

    limit: int
    period: int

    @classmethod
    def parse(cls, text: str) -> RateLimit:
        match = _RATE_RE.match(text)
        if match is None:
            raise ValueError(f"{text!r} is not COUNT/PERIOD such as 5/15s, 100/minute or 1000/1h")
        count, multiple, unit = match.groups()
        period = int(multiple or 1) * _UNIT_SECONDS[unit[0]]
        if int(count) < 1 or period < 1:
            raise ValueError(f"{text!r} must allow at least 1 request per at least 1 second")
        return cls(limit=int(count), period=period)

    def __str__(self) -> str:
        return f"{self.limit}/{self.period}s"


class SettingsError(SystemExit):
    """Raised (as a process exit) when the environment holds a bad value."""


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="TODO_", extra="ignore", frozen=True)

    env: Environment = Environment.DEVELOPMENT
    database_url: str = "sqlite+aiosqlite:///./todo.sqlite3"
    redis_url: str | None = None
    redis_key_prefix: str = "todo:"
    redis_pool_size: int = Field(default=32, ge=1, le=10_000)  # commands in flight per API process
    redis_timeout: float = Field(default=1.0, gt=0)  # how long a Redis reply may take
    broker_url: str | None = None
    secret_key: str = DEV_SECRET_KEY
    use_token_auth: bool = False
    token_ttl: int = Field(default=3600, gt=0)
    use_rate_limits: bool = False
    rate_limit: Annotated[RateLimit, NoDecode] = RateLimit(limit=5, period=15)
    trusted_proxies: int = Field(default=0, ge=0, le=10)
    log_format: Literal["console", "json"] | None = None
    log_level: Literal["debug", "info", "warning", "error", "critical"] = "info"
    flush_interval: float = Field(default=60, gt=0)
    metrics_port: int | None = Field(default=None, ge=1, le=65535)
    max_body_bytes: int = Field(default=64 * 1024, ge=1024)
    per_page_default: int = Field(default=10, ge=1)
    per_page_max: int = Field(default=100, ge=1)
    # PostgreSQL connections per process, no overflow (so none are opened and closed under
    # load). Per API worker process: at least the requests it has in the database at once (more
    # wait up to db_timeout); replicas x workers x pool <= max_connections minus headroom.
    db_pool_size: int = Field(default=10, ge=1)
    # Off for PgBouncer in transaction mode: unnamed statements only (a second round trip each).
    db_prepared_statements: bool = True
    db_timeout: float = Field(default=5, gt=0)  # connecting, waiting for a pooled connection
    db_statement_timeout: float = Field(default=10, gt=0)  # any one query of the API or worker
    graceful_timeout: float = Field(default=10, ge=0)
    state_dir: Path = Path(".todo-state")
    hits_flush_threshold: int = Field(default=10_000, ge=1)
    count_hits: bool = True  # count views of todos (needs TODO_REDIS_URL)
    http_metrics: bool = True  # the API's per-request Prometheus metrics
    # Test hooks (TODO_ENV=test only): the flush task pauses at this stage, so a test can kill it.
    test_pause_flush_at: Literal["claimed", "applied"] | None = None
    test_pause_seconds: float = Field(default=30, ge=0)

    @field_validator("rate_limit", mode="before")
    @classmethod
    def _parse_rate_limit(cls, value: object) -> object:
        return RateLimit.parse(value) if isinstance(value, str) else value

    @field_validator("log_format", "log_level", mode="before")
    @classmethod
    def _lower(cls, value: object) -> object:
        return value.lower() if isinstance(value, str) else value

    @field_validator("database_url")
    @classmethod
    def _async_driver(cls, value: str) -> str:
        if not value.startswith(("sqlite+aiosqlite://", "postgresql+asyncpg://")):
            raise ValueError("must start with sqlite+aiosqlite:// or postgresql+asyncpg://")
        return value

    @field_validator("redis_url")
    @classmethod
    def _redis_url(cls, value: str | None) -> str | None:
        return None if value is None else _checked_url(value, _REDIS_SCHEMES)

    @field_validator("broker_url")
    @classmethod
    def _broker_url(cls, value: str | None) -> str | None:
        return None if value is None else _checked_url(value, _BROKER_SCHEMES)

    @model_validator(mode="after")
    def _consistent(self) -> Settings:
        if self.env is Environment.PRODUCTION:
            if self.secret_key == DEV_SECRET_KEY:
                raise ValueError("TODO_SECRET_KEY: set a real secret when TODO_ENV=production")
            if len(self.secret_key.encode()) < MIN_PRODUCTION_SECRET_BYTES:
                raise ValueError(
                    f"TODO_SECRET_KEY: must be at least {MIN_PRODUCTION_SECRET_BYTES} bytes "
                    "when TODO_ENV=production"
                )
        if self.use_rate_limits and not self.redis_url:
            raise ValueError("TODO_USE_RATE_LIMITS: needs TODO_REDIS_URL")
        if self.test_pause_flush_at is not None and self.env is not Environment.TEST:
            raise ValueError("TODO_TEST_PAUSE_FLUSH_AT: a test hook, only for TODO_ENV=test")
        if self.per_page_default > self.per_page_max:
            raise ValueError("TODO_PER_PAGE_DEFAULT: must not exceed TODO_PER_PAGE_MAX")
        return self

    @cached_property
    def is_sqlite(self) -> bool:
        return self.database_url.startswith("sqlite")

    @cached_property
    def broker(self) -> str:
        """The Celery broker: TODO_BROKER_URL, else the Redis URL, else the local filesystem."""
        return self.broker_url or self.redis_url or "filesystem://localhost/"


# URL schemes, and whether a URL of that scheme names a host (the others name a path).
_REDIS_SCHEMES = {"redis": True, "rediss": True, "unix": False}
_BROKER_SCHEMES = {
    **_REDIS_SCHEMES,
    "amqp": True,
    "amqps": True,
    "pyamqp": True,
    "filesystem": False,
    "memory": False,
}


def _checked_url(value: str, schemes: dict[str, bool]) -> str:
    """`value` if it is a URL of one of `schemes` (with a host and a valid port where the scheme
    needs one): a typo fails at start-up, not as a connection retried forever."""
    listed = ", ".join(f"{scheme}://" for scheme in schemes)
    parts = urlsplit(value)
    if parts.scheme not in schemes:
        raise ValueError(f"must be a URL starting with one of {listed}")
    try:
        parts.port  # noqa: B018  (raises on a port that is not a number in range)
    except ValueError:
        raise ValueError("has a port that is not a number from 0 to 65535") from None
    if schemes[parts.scheme] and not parts.hostname:
        raise ValueError(f"must name a host ({parts.scheme}://HOST:PORT/...)")
    return value


# Never echoed in an error: they hold secrets or credentials.
_SECRET_FIELDS = {"secret_key", "database_url", "redis_url", "broker_url"}


def _describe(error: ValidationError) -> str:
    first = error.errors()[0]
    message = first["msg"].removeprefix("Value error, ")
    if first["loc"]:
        field = str(first["loc"][0])
        shown = "" if field in _SECRET_FIELDS else f" (got {first.get('input')!r})"
        return f"TODO_{field.upper()}: {message}{shown}"
    return message


def load_settings() -> Settings:
    """Read the environment; on a bad value raise `SettingsError` with one line naming it."""
    try:
        return Settings()
    except ValidationError as error:
        raise SettingsError(f"todo: invalid configuration: {_describe(error)}") from None
