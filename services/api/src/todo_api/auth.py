"""Who is calling: the credentials a request carries, and signed tokens (Basic `token:` or Bearer).

Seed semantics: with `TODO_USE_TOKEN_AUTH` off the API takes username:password; with it on, the API
takes only tokens and a password is good for nothing but `GET /auth/request-token`. A token's
signature is checked in memory; one primary-key read then compares its password version with the
user's, so a password change (`todoctl passwd`) revokes older tokens at once, on every replica.
Passwords are checked by `todo_api.passwords`.
"""

from __future__ import annotations

import base64
import binascii
from dataclasses import dataclass

from quart import Quart, current_app, request

from todo_api.errors import APIError
from todo_api.resources import database, settings_of
from todo_common.security import InvalidTokenError, TokenReader
from todo_common.users import get_password_version

TOKEN_READER = "todo.token_reader"  # noqa: S105 (an extension name, not a secret)


def init_app(app: Quart, secret_key: str) -> None:
    app.extensions[TOKEN_READER] = TokenReader(secret_key)


@dataclass(frozen=True)
class Credentials:
    scheme: str  # "basic" or "bearer"
    username: str
    password: str


@dataclass(frozen=True)
class Principal:
    user_id: int
    password_version: int


def read_credentials() -> Credentials | None:
    header = request.headers.get("Authorization", "")
    # Headers arrive decoded as latin-1. Credentials are ASCII (Basic is base64, a token is
    # base64url), and b64decode of non-ASCII text raises a plain ValueError, not binascii.Error.
    if not header.isascii():
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
    message: str = "valid credentials are required", password_only: bool = False
) -> APIError:
    challenges = ['Basic realm="todo"']
    if settings_of(current_app).use_token_auth and not password_only:
        challenges.insert(0, 'Bearer realm="todo"')
    return APIError(401, message, {"WWW-Authenticate": ", ".join(challenges)})


async def verify_token(credentials: Credentials) -> Principal | None:
    """The token's user, if its signature and expiry hold and its password version is current."""
    token = credentials.username  # Bearer value, or the seed's Basic "token:" form
    if credentials.scheme == "basic" and credentials.password:
        return None
    reader: TokenReader = current_app.extensions[TOKEN_READER]
    try:
        claims = reader.read(token)
    except InvalidTokenError:
        return None
    async with database(current_app).connection() as connection:
        current_version = await get_password_version(connection, claims.user_id)
    if current_version != claims.password_version:
        return None  # revoked by a password change, or the user is gone
    return Principal(claims.user_id, claims.password_version)
