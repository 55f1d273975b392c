"""Data functions for users, shared by the API and `todoctl`."""

from __future__ import annotations

import asyncio

from sqlalchemy import select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession

from todo_common.exceptions import UserExistsError
from todo_common.models import USERNAME_MAX, User
from todo_common.security import VerifiedPasswords, hash_password, verify_password


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


async def authenticate_user(
    session: AsyncSession,
    username: str,
    password: str,
    verified: VerifiedPasswords | None = None,
) -> User | None:
    """The user if the password matches; unknown names cost the same as wrong passwords.

    `verified`, when given, skips Argon2id for a password that matched recently.
    """
    user = await get_user_by_name(session, username) if len(username) <= USERNAME_MAX else None
    if user is not None and verified and verified.check(user.id, user.password_hash, password):
        return user
    stored_hash = user.password_hash if user is not None else None
    if not await asyncio.to_thread(verify_password, stored_hash, password):
        return None
    if user is not None and verified is not None:
        verified.remember(user.id, user.password_hash, password)
    return user
