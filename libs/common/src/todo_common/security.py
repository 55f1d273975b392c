"""Password hashing (Argon2id) and signed, expiring access tokens (JWT, HS256 pinned).

Verifying a password takes tens of milliseconds of CPU by design, so callers in an event loop run
`verify_password` in a thread. Unknown users are checked against a dummy hash so that "no such user"
and "wrong password" cost the same time and cannot be told apart.

A token carries `sub` (user id), `iat`, `exp`, `typ` ("access") and `pwv`, the user's password
version when it was issued: whoever accepts a token also checks `pwv` against the user's current
version, so a password change revokes every token issued before it. Only HS256 is accepted: a
token whose header names any other algorithm (`none`, RS256, HS512, ...) is refused. A token has
one spelling (three canonical base64url segments, no padding), and `sub` and `pwv` must fit the
columns they name, so a signed but impossible token is an invalid token, not a database error.

The caches here take a `clock` so that their expiry can be tested without sleeping.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from functools import cache
from typing import Generic, TypeVar

import jwt
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

# Defined in the exception tree; imported here too for callers that read tokens.
from todo_common.exceptions import InvalidTokenError as InvalidTokenError

V = TypeVar("V")

TOKEN_ALGORITHM = "HS256"  # noqa: S105 - an algorithm name, not a secret
TOKEN_TYPE = "access"  # noqa: S105

# users.id is a BIGINT, users.password_version an INTEGER, both counting from 1.
USER_ID_MAX = 2**63 - 1
PASSWORD_VERSION_MAX = 2**31 - 1
_USER_ID = re.compile(r"[1-9][0-9]{0,18}")  # as str(user_id) writes it
_BASE64URL = re.compile(r"[A-Za-z0-9_-]+")

_hasher = PasswordHasher()  # argon2-cffi's defaults: Argon2id, RFC 9106 low-memory profile


def hash_password(password: str) -> str:
    return _hasher.hash(password)


@cache
def _dummy_hash() -> str:
    return _hasher.hash("todo: a password no user has")


def verify_password(password_hash: str | None, password: str) -> bool:
    """True when `password` matches; pass None for an unknown user (same cost, always False)."""
    try:
        return _hasher.verify(password_hash or _dummy_hash(), password) and bool(password_hash)
    except (VerificationError, InvalidHashError):
        return False


def warm_up() -> None:
    """Compute the dummy hash now, so the first unknown user isn't faster than the rest."""
    _dummy_hash()


@dataclass(frozen=True)
class TokenClaims:
    user_id: int
    issued_at: int
    expires_at: int
    password_version: int


def issue_token(
    secret_key: str, user_id: int, ttl: int, password_version: int = 1, now: float | None = None
) -> str:
    issued = int(now if now is not None else time.time())
    claims = {
        "sub": str(user_id),
        "iat": issued,
        "exp": issued + ttl,
        "typ": TOKEN_TYPE,
        "pwv": password_version,
    }
    return jwt.encode(claims, secret_key, algorithm=TOKEN_ALGORITHM)


def _canonical_segment(segment: str) -> bool:
    """Whether `segment` is base64url as we write it: no padding, and no unused bits set in its
    last character (decoding ignores them, so they would give one token several spellings)."""
    if _BASE64URL.fullmatch(segment) is None or len(segment) % 4 == 1:
        return False
    decoded = base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4))
    return base64.urlsafe_b64encode(decoded).rstrip(b"=").decode() == segment


def _user_id(sub: object) -> int:
    if not (isinstance(sub, str) and _USER_ID.fullmatch(sub) and int(sub) <= USER_ID_MAX):
        raise InvalidTokenError("sub must be a user id")
    return int(sub)


def read_token(secret_key: str, token: str) -> TokenClaims:
    segments = token.split(".")
    if len(segments) != 3 or not all(_canonical_segment(segment) for segment in segments):
        raise InvalidTokenError("a token is three base64url segments without padding")
    try:
        claims = jwt.decode(
            token,
            secret_key,
            algorithms=[TOKEN_ALGORITHM],
            options={"require": ["exp", "iat", "sub", "typ", "pwv"]},
        )
        if claims["typ"] != TOKEN_TYPE:
            raise InvalidTokenError("not an access token")
        if not all(type(claims[name]) is int for name in ("iat", "exp", "pwv")):
            raise InvalidTokenError("iat, exp and pwv must be integers")
        if not 1 <= claims["pwv"] <= PASSWORD_VERSION_MAX:
            raise InvalidTokenError("pwv must be a password version")
        return TokenClaims(
            user_id=_user_id(claims["sub"]),
            issued_at=claims["iat"],
            expires_at=claims["exp"],
            password_version=claims["pwv"],
        )
    except (jwt.PyJWTError, ValueError, TypeError) as error:
        raise InvalidTokenError(str(error)) from error


class TokenReader:
    """`read_token` with a memory: a token string whose signature checked out once maps to its
    claims, so a client re-sending its token costs a dict lookup instead of an HMAC and a JSON
    parse. Expiry is checked on every read, on `clock` (the wall clock: `exp` is epoch seconds);
    only valid tokens are remembered."""

    def __init__(
        self, secret_key: str, max_entries: int = 10_000, clock: Callable[[], float] = time.time
    ) -> None:
        self._secret_key = secret_key
        self._max_entries = max_entries
        self._clock = clock
        self._claims: dict[str, TokenClaims] = {}

    def read(self, token: str) -> TokenClaims:
        claims = self._claims.get(token)
        if claims is None:
            claims = read_token(self._secret_key, token)
            if len(self._claims) >= self._max_entries:
                self._claims.clear()
            self._claims[token] = claims
        if claims.expires_at <= self._clock():
            self._claims.pop(token, None)
            raise InvalidTokenError("Signature has expired")
        return claims


class SecretKeyedMemory(Generic[V]):
    """Values remembered for `ttl` seconds (on `clock`, monotonic by default) under an HMAC, keyed
    by the server's secret key and a `purpose`, of the parts that find them: the parts themselves
    (a password, say) are never kept, and only the exact parts find a value. At most
    `max_entries` are kept: when full, the expired go first, then everything."""

    def __init__(
        self,
        secret_key: str,
        purpose: str,
        ttl: float = 60.0,
        max_entries: int = 10_000,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._key = hashlib.sha256(f"todo-{purpose}:{secret_key}".encode()).digest()
        self._ttl = ttl
        self._max_entries = max_entries
        self._clock = clock
        self._entries: dict[bytes, tuple[V, float]] = {}

    def _digest(self, parts: tuple[str | int, ...]) -> bytes:
        message = "\x00".join(map(str, parts)).encode()
        return hmac.new(self._key, message, hashlib.sha256).digest()

    def recall(self, *parts: str | int) -> V | None:
        digest = self._digest(parts)
        entry = self._entries.get(digest)
        if entry is None:
            return None
        value, expires = entry
        if expires < self._clock():
            del self._entries[digest]
            return None
        return value

    def remember(self, value: V, *parts: str | int) -> None:
        if len(self._entries) >= self._max_entries:
            now = self._clock()
            self._entries = {k: v for k, v in self._entries.items() if v[1] >= now}
            if len(self._entries) >= self._max_entries:
                self._entries.clear()
        self._entries[self._digest(parts)] = (value, self._clock() + self._ttl)

    def forget_where(self, matches: Callable[[V], bool]) -> None:
        self._entries = {k: v for k, v in self._entries.items() if not matches(v[0])}


class VerifiedPasswords:
    """A short-lived memory of successful password checks, so HTTP Basic clients don't pay
    Argon2id on every request.

    Entries are keyed by an HMAC (under the server's secret key) of the user id, the stored
    hash and the password: no password is kept, a changed password (new stored hash) never
    matches an old entry, and failures are never remembered, so guessing still costs full price.
    """

    def __init__(
        self,
        secret_key: str,
        ttl: float = 60.0,
        max_entries: int = 10_000,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._memory = SecretKeyedMemory[bool](
            secret_key, "verified-passwords", ttl, max_entries, clock
        )

    def check(self, user_id: int, password_hash: str, password: str) -> bool:
        return self._memory.recall(user_id, password_hash, password) is not None

    def remember(self, user_id: int, password_hash: str, password: str) -> None:
        self._memory.remember(True, user_id, password_hash, password)
