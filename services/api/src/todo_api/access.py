"""The gate in front of every /api and /auth route: authenticate, then count against the limit.

The limiter keys an authenticated caller by user id and anyone else by client address (after the
trusted-proxy rewrite), so failed logins are limited too. Before a password is checked, the
address's window is looked at: once an address has spent its budget, it gets 429 without any
password being verified, so guessing neither burns Argon2id time nor learns which guess was right.
`g.rate_limit` carries the window to the response, where the X-RateLimit-* headers are added.
A GET of a todo also has its view counted by the same Redis call (see `todo_api.hits`).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from quart import current_app, g, request

from todo_api.auth import (
    Credentials,
    Principal,
    authenticate,
    checks_a_password,
    read_credentials,
    unauthorized,
)
from todo_api.errors import APIError
from todo_api.hits import hit_counter
from todo_api.ratelimit import RateLimiter, ViewKeys, WindowState

LIMITER = "todo.rate_limiter"
# The endpoint whose successful GETs count as views of a todo.
VIEW_ENDPOINT = "todos.get_todo_item"

Authenticator = Callable[[Credentials | None], Awaitable[Principal | None]]


def current_user_id() -> int:
    principal: Principal = g.principal
    return principal.user_id


def _too_many(limiter: RateLimiter, state: WindowState) -> APIError:
    g.rate_limit = state
    return APIError(429, f"rate limit of {limiter.rule} exceeded; retry in {state.retry_after}s")


async def admit(authenticator: Authenticator = authenticate, password_only: bool = False) -> None:
    credentials = read_credentials()
    limiter: RateLimiter | None = current_app.extensions.get(LIMITER)
    address = f"addr:{request.remote_addr}"
    if limiter is not None and checks_a_password(credentials):
        spent = await limiter.peek(address)
        if spent is not None and spent.exceeded:
            raise _too_many(limiter, spent)
    principal = await authenticator(credentials)
    if limiter is not None:
        identity = f"user:{principal.user_id}" if principal else address
        state = await limiter.hit(identity, _view_to_count(principal))
        g.rate_limit = state
        if state is not None and state.view_counted:
            g.view_counted = True
            if state.flush_wanted:
                counter = hit_counter(current_app)
                assert counter is not None
                counter.request_flush()
        if state is not None and state.exceeded:
            raise _too_many(limiter, state)
    if principal is None:
        raise unauthorized(password_only=password_only)
    g.principal = principal


def _view_to_count(principal: Principal | None) -> ViewKeys | None:
    """The hit a GET of a todo counts in advance, with its rate limit, in one round trip."""
    counter = hit_counter(current_app)
    if counter is None or principal is None or request.method != "GET":
        return None
    if request.endpoint != VIEW_ENDPOINT or not request.view_args:
        return None
    return counter.view_keys(principal.user_id, int(request.view_args["todo_id"]))


async def require_user() -> None:
    """`before_request` hook of the protected blueprints."""
    await admit()
