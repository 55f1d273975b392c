"""The gate in front of every /api and /auth route, in the order a request meets it.

/api routes (`require_user`):

1. authenticate: a token (its signature, type and expiry checked in memory; its password version
   is checked by the statement that serves the request, in the same round trip) or, with token
   auth off, a username and password (`todo_api.passwords`: a login known from the last minute
   costs no round trip, its password version being checked like a token's). A password whose
   check would cost Argon2id first spends one attempt of the address's password window, counted
   before the check, so requests sent at once cannot all slip under the limit;
2. limit: the request spends one from its caller's window: the user's (for a token, the user it
   was signed for), or the address's when nobody was authenticated, so failed and anonymous
   requests are limited too;
3. refuse: 401 when nobody was authenticated.

The token route (`require_password`, `/auth/request-token`):

1. limit: every request spends one from the route's own windows, the address's then the
   username's, before anything is checked; an address over its budget spends no name's;
2. authenticate: a password only (a token cannot renew itself);
3. refuse: 401.

After the handler, a successful GET of a todo counts as a view (`todo_api.hits`).

`Gate` holds the steps and knows no web framework: the fast route (`todo_api.hot`) calls it with
the header and address it read from the ASGI scope, the Quart hooks below with Quart's. An
admission carries the windows' X-RateLimit-* headers for whatever answer follows; a refusal is an
`APIError` that carries them already.

Failure policy, per step: when Redis is down, /api serves without limits (fail open: counted in
`todo_redis_failures_total`, logged at most every 10 s, Redis skipped for a second), while the
token route answers 503 rather than let password guessing run unlimited. When Redis is up but
this process has no room for its command in time (`RedisBusy`), both answer 503 with
Retry-After: a flood must never switch the limiter off. Each window's X-RateLimit-* headers are
added to the response, whatever its status.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

from prometheus_client import Counter
from quart import Quart, after_this_request, current_app, g, request
from quart.typing import ResponseTypes as AnyResponse

from todo_api.auth import Credentials, Principal, parse_credentials, read_token, unauthorized
from todo_api.passwords import PasswordChecker
from todo_api.ratelimit import RateLimiter, Window
from todo_common.degraded import Degraded
from todo_common.exceptions import APIError, RedisBusy, RedisUnavailable
from todo_common.security import TokenReader

REDIS_FAILURES = Counter(
    "todo_redis_failures_total",
    "Requests that found Redis unavailable, by feature. They are served without the feature "
    "(fail open), except on the token route, which answers 503 (rate_limit fails closed there).",
    ["feature"],
)
# Every feature's series from the start (at 0), so dashboards and alerts see the counter before
# the first failure, and rate() counts that failure.
for _feature in ("rate_limit", "hits"):
    REDIS_FAILURES.labels(_feature)
REDIS_BUSY = Counter(
    "todo_redis_busy_total",
    "Requests answered 503 because no Redis connection came free in time (Redis is up).",
    ["feature"],
)

_GATE = "todo.gate"
BUSY_RETRY_AFTER_SECONDS = 1
LOGIN_RETRY_AFTER_SECONDS = 5
_NO_HEADERS: dict[str, str] = {}


@dataclass(frozen=True, slots=True)
class Admission:
    principal: Principal
    headers: dict[str, str]  # the rate limit windows', for the answer whatever its status


class Gate:
    def __init__(
        self,
        *,
        use_token_auth: bool,
        tokens: TokenReader,
        passwords: PasswordChecker,
        limiter: RateLimiter | None,
    ) -> None:
        self.use_token_auth = use_token_auth
        self.tokens = tokens
        self.passwords = passwords
        self.limiter = limiter
        self.limiter_down = Degraded(
            "rate_limit", "redis unavailable; failing open", backoff=1.0, log_every=10.0
        )

    def init_app(self, app: Quart) -> None:
        app.extensions[_GATE] = self

    async def admit(self, authorization: str | None, address: str | None) -> Admission:
        """The /api routes' gate: authenticate, limit, refuse (401, 429 or 503 as `APIError`)."""
        credentials = parse_credentials(authorization)
        principal = await self._authenticate(credentials, address)
        headers = await self._limit(f"user:{principal.user_id}" if principal else f"addr:{address}")
        if principal is None:
            raise unauthorized(token_auth=self.use_token_auth, headers=headers)
        return Admission(principal, headers)

    async def admit_login(self, authorization: str | None, address: str | None) -> Admission:
        """The token route's gate: limit (fails closed), then a password only."""
        credentials = parse_credentials(authorization)
        headers = await self._limit_login(credentials, address)
        principal = None
        if credentials is not None:
            principal = await self.passwords.check(credentials, _nothing_to_spend)
        if principal is None:
            raise unauthorized(token_auth=self.use_token_auth, password_only=True, headers=headers)
        return Admission(principal, headers)

    async def _authenticate(
        self, credentials: Credentials | None, address: str | None
    ) -> Principal | None:
        if credentials is None:
            return None
        if self.use_token_auth:
            return read_token(self.tokens, credentials)

        async def spend_password_attempt() -> None:
            # Before a password is hashed: one attempt of the address's password window.
            headers = await self._limit(f"pw:addr:{address}")
            del headers  # the request's own window's headers are the ones it answers with

        return await self.passwords.authenticate(credentials, spend_password_attempt)

    async def _limit(self, identity: str) -> dict[str, str]:
        """Spend one request of `identity`'s window: its headers; 429 beyond it. Fails open
        when Redis is down."""
        if self.limiter is None:
            return _NO_HEADERS
        if self.limiter_down.is_down():
            REDIS_FAILURES.labels("rate_limit").inc()
            self.limiter_down.record(None)
            return _NO_HEADERS
        try:
            window = await self.limiter.count(identity)
        except RedisUnavailable as error:
            REDIS_FAILURES.labels("rate_limit").inc()
            self.limiter_down.record(error)
            return _NO_HEADERS
        except RedisBusy:
            raise _busy() from None
        return self._answer_with(window, self.limiter)

    async def _limit_login(
        self, credentials: Credentials | None, address: str | None
    ) -> dict[str, str]:
        """The token route's windows, per address then per username; fails closed."""
        if self.limiter is None:
            return _NO_HEADERS
        identities = [f"login:addr:{address}"]
        if credentials is not None and credentials.scheme == "basic":
            # Hashed: a key stays short and printable whatever the client sent as a name.
            name = hashlib.sha256(credentials.username.encode()).hexdigest()[:32]
            identities.append(f"login:name:{name}")
        if self.limiter_down.is_down():
            REDIS_FAILURES.labels("rate_limit").inc()
            self.limiter_down.record(None)
            raise _logins_paused()
        try:
            window = await self.limiter.count(*identities)
        except RedisUnavailable as error:
            REDIS_FAILURES.labels("rate_limit").inc()
            self.limiter_down.record(error, fails_closed="/auth/request-token answers 503")
            raise _logins_paused() from None
        except RedisBusy:
            raise _busy() from None
        return self._answer_with(window, self.limiter)

    @staticmethod
    def _answer_with(window: Window, limiter: RateLimiter) -> dict[str, str]:
        headers = window.headers()
        if window.exceeded:
            raise APIError(
                429,
                f"rate limit of {limiter.rule} exceeded; retry in {window.retry_after}s",
                headers,
            )
        return headers


async def _nothing_to_spend() -> None:
    """The token route counted the attempt before anything else."""


def _logins_paused() -> APIError:
    return APIError(
        503,
        "logins are paused: the rate limiter is unreachable",
        {"Retry-After": str(LOGIN_RETRY_AFTER_SECONDS)},
    )


def _busy() -> APIError:
    REDIS_BUSY.labels("rate_limit").inc()
    return APIError(
        503,
        "the server is too busy to check the rate limit; retry shortly",
        {"Retry-After": str(BUSY_RETRY_AFTER_SECONDS)},
    )


def gate_of(app: Quart) -> Gate:
    gate: Gate = app.extensions[_GATE]
    return gate


# The Quart side: `before_request` hooks of the /api blueprints and the token route.


def current_principal() -> Principal:
    principal: Principal = g.principal
    return principal


def current_user_id() -> int:
    return current_principal().user_id


async def require_user() -> None:
    _admitted(await gate_of(current_app).admit(_authorization(), request.remote_addr))


async def require_password() -> None:
    _admitted(await gate_of(current_app).admit_login(_authorization(), request.remote_addr))


def _authorization() -> str | None:
    return request.headers.get("Authorization")


def _admitted(admission: Admission) -> None:
    g.principal = admission.principal
    if admission.headers:

        @after_this_request
        async def add_headers(response: AnyResponse) -> AnyResponse:
            response.headers.update(admission.headers)
            return response
