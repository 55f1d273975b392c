"""Data functions for users, shared by the API and `todoctl`."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

from sqlalchemy import select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession

from todo_common.exceptions import UserExistsError
from todo_common.models import USERNAME_MAX, User
from todo_common.security import hash_password, verify_password


def check_username(username: str) -> str | None:
    """Return why `username` is unusable, or None when it is fine."""
    if not username or username != username.strip():
        return "user name must be non-empty, without leading or trailing spaces"
    if len(username) > USERNAME_MAX:
        return f"user name must be at most {USERNAME_MAX} characters"
    if ":" in username:
        return "user name must not contain ':' (HTTP Basic uses it as the separator)"
    if not username.isprintable():
        return "user name must be printable"
    return None


async def create_user(session: AsyncSession, username: str, password: str) -> User:
    """Insert a user and commit; raises `UserExistsError` if the name is taken."""
    password_hash = await asyncio.to_thread(hash_password, password)
    user = User(username=username, password_hash=password_hash)
    session.add(user)
    try:
        await session.commit()
    except IntegrityError as error:
        await session.rollback()
        raise UserExistsError(username) from error
    return user


async def change_password(session: AsyncSession, username: str, password: str) -> int | None:
    """Set a new password and bump the password version (revoking older tokens); commit.

    Returns the new password version, or None when there is no such user.
    """
    password_hash = await asyncio.to_thread(hash_password, password)
    version = await session.scalar(
        update(User)
        .where(User.username == username)
        .values(password_hash=password_hash, password_version=User.password_version + 1)
        .returning(User.password_version)
    )
    await session.commit()
    return version


async def get_password_version(reader: AsyncConnection | AsyncSession, user_id: int) -> int | None:
    """The user's current password version (what valid tokens carry), None if no such user."""
    return await reader.scalar(select(User.password_version).where(User.id == user_id))


async def get_user_by_name(session: AsyncSession, username: str) -> User | None:
    return await session.scalar(select(User).where(User.username == username))


@dataclass(frozen=True)
class Login:
    """What checking a user's password needs: one short read, then no connection held."""

    user_id: int
    password_hash: str
    password_version: int


async def get_login(reader: AsyncConnection | AsyncSession, *, username: str) -> Login | None:
    """The user's id, stored hash and password version; None for no such (or impossible) name."""
    if len(username) > USERNAME_MAX:
        return None
    row = (
        await reader.execute(
            select(User.id, User.password_hash, User.password_version).where(
                User.username == username
            )
        )
    ).one_or_none()
    return Login(*row) if row is not None else None


async def authenticate_user(
    reader: AsyncConnection | AsyncSession, username: str, password: str
) -> Login | None:
    """The user's login if the password matches; unknown names cost the same as wrong passwords.

    The hash is checked after the read, off the event loop: hold no transaction across it."""
    login = await get_login(reader, username=username)
    stored_hash = login.password_hash if login is not None else None
    if not await asyncio.to_thread(verify_password, stored_hash, password):
        return None
    return login
