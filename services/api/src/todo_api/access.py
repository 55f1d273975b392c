"""The gate in front of every /api and /auth route: authenticate, then count against the limit.

The limiter keys an authenticated caller by user id and anyone else by client address (after the
trusted-proxy rewrite), so failed logins are limited too. `g.rate_limit` carries the window to the
response, where `after_request` adds the X-RateLimit-* headers.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from quart import current_app, g, request

from todo_api.auth import Credentials, Principal, authenticate, read_credentials, unauthorized
from todo_api.errors import APIError
from todo_api.ratelimit import RateLimiter

LIMITER = "todo.rate_limiter"

Authenticator = Callable[[Credentials | None], Awaitable[Principal | None]]


def current_user_id() -> int:
    principal: Principal = g.principal
    return principal.user_id


async def admit(authenticator: Authenticator = authenticate) -> None:
    credentials = read_credentials()
    principal = await authenticator(credentials)
    limiter: RateLimiter | None = current_app.extensions.get(LIMITER)
    if limiter is not None:
        identity = f"user:{principal.user_id}" if principal else f"addr:{request.remote_addr}"
        state = await limiter.hit(identity)
        g.rate_limit = state
        if state is not None and state.exceeded:
            raise APIError(
                429,
                f"rate limit of {limiter.rule} exceeded; retry in {state.retry_after}s",
            )
    if principal is None:
        raise unauthorized()
    g.principal = principal


async def require_user() -> None:
    """`before_request` hook of the protected blueprints."""
    await admit()
