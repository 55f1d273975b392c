"""The gate in front of every /api and /auth route, in the order a request meets it.

/api routes (`require_user`):

1. authenticate: a token (its signature checked in memory, one read for the password version)
   or, with token auth off, a username and password (`todo_api.passwords`). A password whose
   check would cost Argon2id first spends one attempt of the address's password window, counted
   before the check, so requests sent at once cannot all slip under the limit;
2. limit: the request spends one from its caller's window: the user's, or the address's when
   nobody was authenticated, so failed and anonymous requests are limited too;
3. refuse: 401 when nobody was authenticated.

The token route (`require_password`, `/auth/request-token`):

1. limit: every request spends one from the route's own windows, the address's then the
   username's, before anything is checked; an address over its budget spends no name's;
2. authenticate: a password only (a token cannot renew itself);
3. refuse: 401.

After the handler, a successful GET of a todo counts as a view (`todo_api.hits`).

Failure policy, per step: when Redis is down, /api serves without limits (fail open: counted in
`todo_redis_failures_total`, logged at most every 10 s, Redis skipped for a second), while the
token route answers 503 rather than let password guessing run unlimited. When Redis is up but
this process has no connection free for it in time (`RedisBusy`), both answer 503 with
Retry-After: a flood must never switch the limiter off. Each window's X-RateLimit-* headers are
added to the response, whatever its status.
"""

from __future__ import annotations

import hashlib

from prometheus_client import Counter
from quart import Quart, after_this_request, current_app, g, request
from quart.typing import ResponseTypes as AnyResponse

from todo_api.auth import Credentials, Principal, read_credentials, unauthorized, verify_token
from todo_api.passwords import password_checker
from todo_api.ratelimit import RateLimiter, Window
from todo_api.resources import settings_of
from todo_common.degraded import Degraded
from todo_common.exceptions import APIError, RedisBusy, RedisUnavailable

REDIS_FAILURES = Counter(
    "todo_redis_failures_total",
    "Requests that found Redis unavailable, by feature. They are served without the feature "
    "(fail open), except on the token route, which answers 503 (rate_limit fails closed there).",
    ["feature"],
)
REDIS_BUSY = Counter(
    "todo_redis_busy_total",
    "Requests answered 503 because no Redis connection came free in time (Redis is up).",
    ["feature"],
)

_LIMITER = "todo.rate_limiter"
_LIMITER_DOWN = "todo.rate_limiter.down"
BUSY_RETRY_AFTER_SECONDS = 1
LOGIN_RETRY_AFTER_SECONDS = 5


def init_app(app: Quart, limiter: RateLimiter | None) -> None:
    if limiter is not None:
        app.extensions[_LIMITER] = limiter
        app.extensions[_LIMITER_DOWN] = Degraded(
            "rate_limit",
            "redis unavailable; failing open",
            backoff=1.0,
            log_every=10.0,
        )


def current_principal() -> Principal:
    principal: Principal = g.principal
    return principal


def current_user_id() -> int:
    return current_principal().user_id


async def require_user() -> None:
    """`before_request` hook of the /api blueprints."""
    credentials = read_credentials()
    principal = await _authenticate(credentials)
    await _limit(f"user:{principal.user_id}" if principal else _address())
    if principal is None:
        raise unauthorized()
    g.principal = principal


async def require_password() -> None:
    """`before_request` hook of the token route."""
    credentials = read_credentials()
    await _limit_login(credentials)
    principal = None
    if credentials is not None:
        principal = await password_checker(current_app).check(credentials, _nothing_to_spend)
    if principal is None:
        raise unauthorized(password_only=True)
    g.principal = principal


async def _authenticate(credentials: Credentials | None) -> Principal | None:
    if credentials is None:
        return None
    if settings_of(current_app).use_token_auth:
        return await verify_token(credentials)
    return await password_checker(current_app).check(credentials, _spend_password_attempt)


def _address() -> str:
    return f"addr:{request.remote_addr}"


async def _spend_password_attempt() -> None:
    """Before a password is hashed on /api: one attempt of the address's password window."""
    await _limit(f"pw:{_address()}")


async def _nothing_to_spend() -> None:
    """The token route counted the attempt before anything else."""


async def _limit(identity: str) -> None:
    """Spend one request of `identity`'s window; 429 beyond it. Fails open when Redis is down."""
    limiter: RateLimiter | None = current_app.extensions.get(_LIMITER)
    if limiter is None:
        return
    down: Degraded = current_app.extensions[_LIMITER_DOWN]
    if down.is_down():
        REDIS_FAILURES.labels("rate_limit").inc()
        down.record(None)
        return
    try:
        window = await limiter.count(identity)
    except RedisUnavailable as error:
        REDIS_FAILURES.labels("rate_limit").inc()
        down.record(error)
        return
    except RedisBusy:
        raise _busy() from None
    _answer_with(window, limiter)


async def _limit_login(credentials: Credentials | None) -> None:
    """The token route's windows, per address then per username; fails closed."""
    limiter: RateLimiter | None = current_app.extensions.get(_LIMITER)
    if limiter is None:
        return
    identities = [f"login:{_address()}"]
    if credentials is not None and credentials.scheme == "basic":
        # Hashed: a key stays short and printable whatever the client sent as a name.
        name = hashlib.sha256(credentials.username.encode()).hexdigest()[:32]
        identities.append(f"login:name:{name}")
    down: Degraded = current_app.extensions[_LIMITER_DOWN]
    if down.is_down():
        REDIS_FAILURES.labels("rate_limit").inc()
        down.record(None)
        raise _logins_paused()
    try:
        window = await limiter.count(*identities)
    except RedisUnavailable as error:
        REDIS_FAILURES.labels("rate_limit").inc()
        down.record(error, fails_closed="/auth/request-token answers 503")
        raise _logins_paused() from None
    except RedisBusy:
        raise _busy() from None
    _answer_with(window, limiter)


def _logins_paused() -> APIError:
    return APIError(
        503,
        "logins are paused: the rate limiter is unreachable",
        {"Retry-After": str(LOGIN_RETRY_AFTER_SECONDS)},
    )


def _answer_with(window: Window, limiter: RateLimiter) -> None:
    """The response carries the window's headers; beyond the limit it is a 429."""

    @after_this_request
    async def add_headers(response: AnyResponse) -> AnyResponse:
        response.headers.update(window.headers())
        return response

    if window.exceeded:
        raise APIError(
            429,
            f"rate limit of {limiter.rule} exceeded; retry in {window.retry_after}s",
            window.headers(),
        )


def _busy() -> APIError:
    REDIS_BUSY.labels("rate_limit").inc()
    return APIError(
        503,
        "the server is too busy to check the rate limit; retry shortly",
        {"Retry-After": str(BUSY_RETRY_AFTER_SECONDS)},
    )
