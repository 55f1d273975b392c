"""The gate in front of every /api and /auth route: authenticate, then count against the limit.

The limiter keys an authenticated caller by user id and anyone else by client address (after the
trusted-proxy rewrite), so failed logins are limited too. Before a password is checked, the
address's window is looked at: once an address has spent its budget, it gets 429 without any
password being verified, so guessing neither burns Argon2id time nor learns which guess was right.
`g.rate_limit` carries the window to the response, where the X-RateLimit-* headers are added.
A GET of a todo also has its view counted by the same Redis call (see `todo_api.hits`).

The login route (`/auth/request-token`) is also limited per username, so guessing one user's
password from many addresses is slowed too, and it fails closed: while Redis cannot be reached it
answers 503 rather than let password guessing run unlimited. Every other route fails open.
"""

from __future__ import annotations

import hashlib
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


def current_principal() -> Principal:
    principal: Principal = g.principal
    return principal


def current_user_id() -> int:
    return current_principal().user_id


def _too_many(limiter: RateLimiter, state: WindowState) -> APIError:
    g.rate_limit = state
    return APIError(429, f"rate limit of {limiter.rule} exceeded; retry in {state.retry_after}s")


def _limiter_unavailable() -> APIError:
    return APIError(503, "logins are paused: the rate limiter is unreachable", {"Retry-After": "5"})


def _username_identity(credentials: Credentials | None) -> str | None:
    if credentials is None or credentials.scheme != "basic":
        return None
    # Hashed: a key stays short and printable whatever the client sent as a name.
    return "login:" + hashlib.sha256(credentials.username.encode()).hexdigest()[:32]


async def _limit_login(limiter: RateLimiter, address: str, credentials: Credentials | None) -> None:
    """Check the address, then count the attempt against its username; fail closed.

    The address goes first: one whose budget is spent cannot go on spending other names'.
    """
    spent = await limiter.peek(address)
    if spent is None:
        raise _limiter_unavailable()
    if spent.exceeded:
        raise _too_many(limiter, spent)
    username = _username_identity(credentials)
    if username is not None:
        attempts = await limiter.hit(username)
        if attempts is None:
            raise _limiter_unavailable()
        if attempts.exceeded:
            raise _too_many(limiter, attempts)


async def admit(authenticator: Authenticator = authenticate, login: bool = False) -> None:
    """Authenticate the caller and count the request; `login` marks the token route."""
    credentials = read_credentials()
    limiter: RateLimiter | None = current_app.extensions.get(LIMITER)
    address = f"addr:{request.remote_addr}"
    if limiter is not None and login:
        await _limit_login(limiter, address, credentials)
    elif limiter is not None and checks_a_password(credentials):
        spent = await limiter.peek(address)
        if spent is not None and spent.exceeded:
            raise _too_many(limiter, spent)
    principal = await authenticator(credentials)
    if limiter is not None:
        identity = f"user:{principal.user_id}" if principal else address
        state = await limiter.hit(identity, _view_to_count(principal))
        if state is None and login:
            raise _limiter_unavailable()
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
        raise unauthorized(password_only=login)
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
