"""The store on PostgreSQL, as plain SQL sent straight to asyncpg.

Why it exists: the API's hot statements built and run through SQLAlchemy cost several times the
query itself (measured ~556 us against ~78 us on raw asyncpg for a GET), and a write took up to
five round trips. Here each store call is ONE statement and one round trip, autocommit (asyncpg
opens no transaction of its own), and each checks its caller in that same statement: the user row
with the credentials' password version must exist, else `CredentialsRevoked`.

The connection is one of the engine's pooled connections (see `todo_api.resources.Database.store`),
so SQLAlchemy still owns the pool, its liveness checks and its reset on return. With prepared
statements on (TODO_DB_PREPARED_STATEMENTS), asyncpg's statement cache prepares each text once per
connection; off, it sends unnamed statements (PgBouncer in transaction mode) at a second round trip.

Writes are data-modifying CTEs: every part sees the statement's one snapshot, so counts change only
through row-locking UPDATE / INSERT ... ON CONFLICT, which re-read the latest committed row (exact
under concurrency), and the compare-and-set UPDATE re-checks its version after waiting for a lock.
"""

from __future__ import annotations

import asyncpg

from todo_api.store import Stats, TodoRow, Versions, Window
from todo_common.exceptions import CredentialsRevoked, TodoNotFound, VersionConflict
from todo_common.models import USERNAME_MAX, utcnow
from todo_common.users import Login

_LOGIN = "SELECT id, password_hash, password_version FROM users WHERE username = $1"

# `ok`: the caller is this user at this password version. Every statement selects it.
_GET = """
SELECT u.password_version = $2 AS ok, t.id, t.name, t.task, t.created_at, t.version
FROM users u LEFT JOIN todos t ON t.owner_id = u.id AND t.id = $3 AND u.password_version = $2
WHERE u.id = $1
"""

_COUNT = """
SELECT u.password_version = $2 AS ok, coalesce(c.todos, 0) AS total
FROM users u LEFT JOIN todo_counts c ON c.owner_id = u.id
WHERE u.id = $1
"""

# The page's ids ride along the total, one row each (or one row with a NULL id: an empty page).
_LIST = """
SELECT u.password_version = $2 AS ok, coalesce(c.todos, 0) AS total, p.id
FROM users u
LEFT JOIN todo_counts c ON c.owner_id = u.id
LEFT JOIN LATERAL (
    SELECT t.id FROM todos t
    WHERE t.owner_id = u.id AND u.password_version = $2{bounds}
    ORDER BY t.id {order} OFFSET $3 LIMIT $4
) p ON true
WHERE u.id = $1
"""

_STATS = """
SELECT u.password_version = $2 AS ok, coalesce(c.todos, 0) AS todos,
       (SELECT coalesce(sum(h.hits), 0) FROM todo_hits h WHERE h.owner_id = u.id) AS hits,
       r.todo_id, r.hits AS todo_hits
FROM users u
LEFT JOIN todo_counts c ON c.owner_id = u.id
LEFT JOIN LATERAL (
    SELECT h.todo_id, h.hits FROM todo_hits h
    WHERE h.owner_id = u.id AND h.hits > 0 AND u.password_version = $2
    ORDER BY h.hits DESC, h.todo_id LIMIT $3
) r ON true
WHERE u.id = $1
ORDER BY r.hits DESC, r.todo_id
"""

# No row: the caller is revoked. A user deleted after the snapshot fails the foreign key instead.
_CREATE = """
WITH owner AS (
    SELECT id FROM users WHERE id = $1 AND password_version = $2
), created AS (
    INSERT INTO todos (owner_id, name, task, created_at, version)
    SELECT id, $3, $4, $5, 1 FROM owner
    RETURNING id, owner_id
), counted AS (
    INSERT INTO todo_counts (owner_id, todos) SELECT owner_id, 1 FROM created
    ON CONFLICT (owner_id) DO UPDATE SET todos = todo_counts.todos + 1
)
SELECT id FROM created
"""

# `found`: the todo was there in the statement's snapshot (so a miss was the version's fault).
_UPDATE = """
WITH owner AS (
    SELECT id FROM users WHERE id = $1 AND password_version = $2
), updated AS (
    UPDATE todos t SET name = $4, task = $5, version = t.version + 1
    FROM owner o
    WHERE t.id = $3 AND t.owner_id = o.id AND ($6::int[] IS NULL OR t.version = ANY($6::int[]))
    RETURNING t.id, t.name, t.task, t.created_at, t.version
)
SELECT EXISTS (SELECT 1 FROM owner) AS ok,
       EXISTS (SELECT 1 FROM todos WHERE id = $3 AND owner_id = $1) AS found,
       u.id, u.name, u.task, u.created_at, u.version
FROM (SELECT 1) AS one LEFT JOIN updated u ON true
"""

_DELETE = """
WITH owner AS (
    SELECT id FROM users WHERE id = $1 AND password_version = $2
), deleted AS (
    DELETE FROM todos t USING owner o
    WHERE t.id = $3 AND t.owner_id = o.id AND ($4::int[] IS NULL OR t.version = ANY($4::int[]))
    RETURNING t.owner_id
), counted AS (
    UPDATE todo_counts c SET todos = c.todos - 1 FROM deleted d WHERE c.owner_id = d.owner_id
)
SELECT EXISTS (SELECT 1 FROM owner) AS ok,
       EXISTS (SELECT 1 FROM todos WHERE id = $3 AND owner_id = $1) AS found,
       EXISTS (SELECT 1 FROM deleted) AS done
"""


def _list_statement(window: Window) -> tuple[str, list[int]]:
    """The list statement for this window's shape and its bound cursors (one text per shape, so
    each is prepared once and every cursor is an index condition, not a filter)."""
    bounds, values = "", []
    if window.after is not None:
        values.append(window.after)
        bounds += f" AND t.id > ${4 + len(values)}"
    if window.before is not None:
        values.append(window.before)
        bounds += f" AND t.id < ${4 + len(values)}"
    backwards = window.before is not None or window.from_end
    return _LIST.format(bounds=bounds, order="DESC" if backwards else "ASC"), values


def _expected(versions: Versions) -> list[int] | None:
    return None if versions is None or versions == "*" else list(versions)


class PgStore:
    """`todo_api.store.Store` on one asyncpg connection (autocommit: no transaction is opened)."""

    def __init__(self, connection: asyncpg.Connection) -> None:
        self._connection = connection

    async def ping(self) -> None:
        await self._connection.execute("SELECT 1")

    async def get_login(self, *, username: str) -> Login | None:
        if len(username) > USERNAME_MAX:
            return None  # no such user; and no index scan for a megabyte of name
        row = await self._connection.fetchrow(_LOGIN, username)
        return Login(row["id"], row["password_hash"], row["password_version"]) if row else None

    async def get_todo(
        self, *, owner_id: int, password_version: int, todo_id: int
    ) -> TodoRow | None:
        row = await self._connection.fetchrow(_GET, owner_id, password_version, todo_id)
        if row is None or not row["ok"]:
            raise CredentialsRevoked(owner_id)
        if row["id"] is None:
            return None
        return TodoRow(row["id"], row["name"], row["task"], row["created_at"], row["version"])

    async def count_todos(self, *, owner_id: int, password_version: int) -> int:
        row = await self._connection.fetchrow(_COUNT, owner_id, password_version)
        if row is None or not row["ok"]:
            raise CredentialsRevoked(owner_id)
        return int(row["total"])

    async def list_todo_ids(
        self, *, owner_id: int, password_version: int, window: Window
    ) -> tuple[int, list[int]]:
        statement, bounds = _list_statement(window)
        rows = await self._connection.fetch(
            statement, owner_id, password_version, window.skip, window.limit, *bounds
        )
        if not rows or not rows[0]["ok"]:
            raise CredentialsRevoked(owner_id)
        return int(rows[0]["total"]), sorted(row["id"] for row in rows if row["id"] is not None)

    async def read_stats(self, *, owner_id: int, password_version: int, top: int) -> Stats:
        rows = await self._connection.fetch(_STATS, owner_id, password_version, top)
        if not rows or not rows[0]["ok"]:
            raise CredentialsRevoked(owner_id)
        return Stats(
            todos=int(rows[0]["todos"]),
            hits=int(rows[0]["hits"]),
            most_viewed=[
                (int(row["todo_id"]), int(row["todo_hits"]))
                for row in rows
                if row["todo_id"] is not None
            ],
        )

    async def create_todo(
        self, *, owner_id: int, password_version: int, name: str, task: str
    ) -> int:
        try:
            todo_id = await self._connection.fetchval(
                _CREATE, owner_id, password_version, name, task, utcnow()
            )
        except asyncpg.ForeignKeyViolationError:
            raise CredentialsRevoked(owner_id) from None
        if todo_id is None:
            raise CredentialsRevoked(owner_id)
        return int(todo_id)

    async def update_todo(
        self,
        *,
        owner_id: int,
        password_version: int,
        todo_id: int,
        name: str,
        task: str,
        versions: Versions = None,
    ) -> TodoRow:
        expected = _expected(versions)
        row = await self._connection.fetchrow(
            _UPDATE, owner_id, password_version, todo_id, name, task, expected
        )
        assert row is not None  # the statement always answers one row
        if row["id"] is not None:
            return TodoRow(row["id"], row["name"], row["task"], row["created_at"], row["version"])
        raise _why_unchanged(row, owner_id=owner_id, todo_id=todo_id, expected=expected)

    async def delete_todo(
        self, *, owner_id: int, password_version: int, todo_id: int, versions: Versions = None
    ) -> None:
        expected = _expected(versions)
        row = await self._connection.fetchrow(
            _DELETE, owner_id, password_version, todo_id, expected
        )
        assert row is not None  # the statement always answers one row
        if not row["done"]:
            raise _why_unchanged(row, owner_id=owner_id, todo_id=todo_id, expected=expected)


def _why_unchanged(
    row: asyncpg.Record, *, owner_id: int, todo_id: int, expected: list[int] | None
) -> CredentialsRevoked | TodoNotFound | VersionConflict:
    if not row["ok"]:
        return CredentialsRevoked(owner_id)
    # Without expected versions only a missing row stops the write: also one that a concurrent
    # delete removed after the snapshot, which `found` still saw.
    if expected is None or not row["found"]:
        return TodoNotFound(todo_id)
    return VersionConflict(todo_id)
