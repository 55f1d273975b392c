"""SQLAlchemy 2 models. The schema itself is created only by the Alembic migrations."""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import (
    BigInteger,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    TypeDecorator,
)
from sqlalchemy.engine import Dialect
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

NAME_MAX = 64
TASK_MAX = 250
USERNAME_MAX = 64

# Deterministic constraint names keep migrations identical on SQLite and PostgreSQL.
NAMING_CONVENTION = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

# SQLite only autoincrements INTEGER PRIMARY KEY, so BIGINT ids are plain INTEGER there.
Id = BigInteger().with_variant(Integer(), "sqlite")


class UTCDateTime(TypeDecorator[datetime]):
    """A timezone-aware UTC datetime on every backend (SQLite stores it naive)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is not None and value.tzinfo is None:
            raise ValueError("naive datetimes are ambiguous; pass an aware UTC datetime")
        return value.astimezone(UTC) if value is not None else None

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is not None and value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value


def utcnow() -> datetime:
    return datetime.now(UTC)


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)


class User(Base):
    __tablename__ = "users"
    __table_args__ = ({"sqlite_autoincrement": True},)

    id: Mapped[int] = mapped_column(Id, primary_key=True)
    username: Mapped[str] = mapped_column(String(USERNAME_MAX), unique=True)
    password_hash: Mapped[str] = mapped_column(String(255))
    # Bumped by every password change; tokens carry it, so older tokens stop working.
    password_version: Mapped[int] = mapped_column(Integer, default=1, server_default="1")
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)


class Todo(Base):
    __tablename__ = "todos"
    # One index serves both "this owner's todos" and their id order (list pages by id).
    # AUTOINCREMENT: SQLite would otherwise reuse a deleted todo's id, and an old URL or ETag
    # (whose version part If-Match compares) would then point at a different todo.
    __table_args__ = (
        Index("ix_todos_owner_id_id", "owner_id", "id"),
        {"sqlite_autoincrement": True},
    )

    id: Mapped[int] = mapped_column(Id, primary_key=True)
    owner_id: Mapped[int] = mapped_column(Id, ForeignKey("users.id", ondelete="CASCADE"))
    name: Mapped[str] = mapped_column(String(NAME_MAX))
    task: Mapped[str] = mapped_column(String(TASK_MAX))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    # Bumped by every write; If-Match compares against it atomically in SQL.
    version: Mapped[int] = mapped_column(Integer, default=1)


class TodoHits(Base):
    """Views of a todo, moved here from Redis by the worker's flush (never part of the todo's
    representation, so counting a view does not change the todo's ETag)."""

    __tablename__ = "todo_hits"
    # owner_id is the todo's (never changes); it lets /stats rank one owner's todos by index.
    __table_args__ = (Index("ix_todo_hits_owner_id_hits", "owner_id", "hits"),)

    todo_id: Mapped[int] = mapped_column(
        Id, ForeignKey("todos.id", ondelete="CASCADE"), primary_key=True
    )
    owner_id: Mapped[int] = mapped_column(Id, ForeignKey("users.id", ondelete="CASCADE"))
    hits: Mapped[int] = mapped_column(BigInteger, default=0)


class HitBatch(Base):
    """A flushed batch of hit counts, recorded in the same transaction as its increments: a
    batch whose id is here has been applied, so a retried or concurrent flush skips it."""

    __tablename__ = "hit_batches"
    __table_args__ = (Index("ix_hit_batches_applied_at", "applied_at"),)

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    applied_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)


class TodoCount(Base):
    """How many todos each user has, kept exact by the same transactions that create and delete
    todos, so a list's total is one primary-key read instead of counting the user's rows."""

    __tablename__ = "todo_counts"

    owner_id: Mapped[int] = mapped_column(
        Id, ForeignKey("users.id", ondelete="CASCADE"), primary_key=True
    )
    todos: Mapped[int] = mapped_column(BigInteger, default=0)
