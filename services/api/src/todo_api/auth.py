"""Who is calling: the credentials a request carries, and signed tokens (Basic `token:` or Bearer).

Seed semantics: with `TODO_USE_TOKEN_AUTH` off the API takes username:password; with it on, the API
takes only tokens and a password is good for nothing but `GET /auth/request-token`. A token's
signature, type and expiry are checked here, in memory; whether its password version is still the
user's is checked by the statement that serves the request (`todo_api.store`: each raises
`CredentialsRevoked` otherwise), so a password change (`todoctl passwd`) revokes older tokens at
once, on every replica, without a round trip of its own. Passwords are checked by
`todo_api.passwords`.

Nothing here knows the web framework: the fast route and the Quart blueprints share it.
"""

from __future__ import annotations

import base64
import binascii
from dataclasses import dataclass

from todo_common.exceptions import APIError
from todo_common.security import InvalidTokenError, TokenReader

DEFAULT_MESSAGE = "valid credentials are required"


@dataclass(frozen=True, slots=True)
class Credentials:
    scheme: str  # "basic" or "bearer"
    username: str
    password: str


@dataclass(frozen=True, slots=True)
class Principal:
    """Who the request acts for, and the password version its credentials carry (which the
    store's statements compare with the user's)."""

    user_id: int
    password_version: int


def parse_credentials(header: str | None) -> Credentials | None:
    """The credentials in an Authorization header value, or None when there are none or they
    cannot be read."""
    # Headers arrive decoded as latin-1. Credentials are ASCII (Basic is base64, a token is
    # base64url), and b64decode of non-ASCII text raises a plain ValueError, not binascii.Error.
    if not header or not header.isascii():
        return None
    scheme, _, value = header.partition(" ")
    scheme = scheme.lower()
    value = value.strip()
    if scheme == "bearer" and value:
        return Credentials("bearer", value, "")
    if scheme == "basic" and value:
        try:
            decoded = base64.b64decode(value, validate=True).decode("utf-8")
        except (binascii.Error, UnicodeDecodeError):
            return None
        username, separator, password = decoded.partition(":")
        # PostgreSQL cannot even compare text holding NUL; no real credential contains one.
        if separator and "\x00" not in decoded:
            return Credentials("basic", username, password)
    return None


def unauthorized(
    *,
    token_auth: bool,
    message: str = DEFAULT_MESSAGE,
    password_only: bool = False,
    headers: dict[str, str] | None = None,
) -> APIError:
    """A 401 with the challenges the caller can answer (RFC 9110 11.6.1), plus `headers`."""
    challenges = ['Basic realm="todo"']
    if token_auth and not password_only:
        challenges.insert(0, 'Bearer realm="todo"')
    return APIError(401, message, {**(headers or {}), "WWW-Authenticate": ", ".join(challenges)})


def read_token(reader: TokenReader, credentials: Credentials) -> Principal | None:
    """The token's user and password version, if its signature, type and expiry hold."""
    token = credentials.username  # Bearer value, or the seed's Basic "token:" form
    if credentials.scheme == "basic" and credentials.password:
        return None
    try:
        claims = reader.read(token)
    except InvalidTokenError:
        return None
    return Principal(claims.user_id, claims.password_version)
