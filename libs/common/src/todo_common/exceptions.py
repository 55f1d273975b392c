"""Every exception of ours, in one tree. Callers catch the branch they can act on.

```
TodoError                      anything of ours that a caller may handle
├── DependencyError            a service we rely on cannot serve now (retry later)
│   ├── DatabaseUnavailable    the database is unreachable, restarting, full or too slow (503)
│   ├── RedisUnavailable       Redis is down or unreachable: the features on it fail open
│   └── RedisBusy              Redis is up but this process had no room for a command: the rate
│                              limiter fails closed (503) rather than let a flood switch it off
├── TodoNotFound               no such todo for this owner (404)
├── VersionConflict            the todo exists but its version is not the one expected (412)
├── CredentialsRevoked         no user has this id and password version any more: a token
│                              older than a password change, or its user is gone (401)
├── UserExistsError            a user with that name is already registered
├── SchemaNotReady             the schema did not reach the code's newest migration in time
├── InvalidTokenError          a token that is malformed, forged, of the wrong type or expired
└── APIError                   an HTTP answer to give now: status, message, headers
```

Low-level errors (asyncpg, SQLAlchemy, aiosqlite, Redis error replies, OSError) are translated
once, where they leave the layer that owns the connection
(`todo_common.db.translate_database_errors`, the API's Redis client), so code above that layer
sees only this tree.
"""

from __future__ import annotations

from http import HTTPStatus


class TodoError(Exception):
    """Base of every exception of ours."""


class DependencyError(TodoError):
    """A service we depend on cannot serve right now; a later retry may succeed."""


class DatabaseUnavailable(DependencyError):
    """The database cannot be reached or cannot serve now (not a bug in the statement)."""


class RedisUnavailable(DependencyError):
    """Redis is down or unreachable."""


class RedisBusy(DependencyError):
    """Redis is reachable, but this process had no room for one more command in time (we are
    overloaded)."""


class TodoNotFound(TodoError):
    """The owner has no todo with this id (another user's todo does not exist for them)."""

    def __init__(self, todo_id: int) -> None:
        super().__init__(f"todo {todo_id} not found")
        self.todo_id = todo_id


class VersionConflict(TodoError):
    """The todo exists, but its current version is not one the write expected."""

    def __init__(self, todo_id: int) -> None:
        super().__init__(f"todo {todo_id} has changed")
        self.todo_id = todo_id


class CredentialsRevoked(TodoError):
    """The caller's user no longer exists, or its password version is not the one the
    credentials carry (a token issued before a password change). The store's statements check
    this in the same round trip as their work; the API answers 401."""

    def __init__(self, user_id: int) -> None:
        super().__init__(f"user {user_id} has no such password version")
        self.user_id = user_id


class UserExistsError(TodoError):
    """A user with that name is already registered."""


class SchemaNotReady(TodoError):
    """`todoctl wait-for-migrations` gave up: the message says what it saw last."""


class InvalidTokenError(TodoError):
    """The token is malformed, forged, of the wrong type or expired."""


class APIError(TodoError):
    """Abort the request with `status`, a human `message` and optional extra headers."""

    def __init__(
        self, status: int, message: str | None = None, headers: dict[str, str] | None = None
    ) -> None:
        super().__init__(message or HTTPStatus(status).description)
        self.status = status
        self.message = message or HTTPStatus(status).description
        self.headers = headers or {}
