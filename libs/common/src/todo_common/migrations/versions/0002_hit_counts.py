"""hit counts and applied hit batches

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-24
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

Id = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "todo_hits",
        sa.Column("todo_id", Id, nullable=False),
        sa.Column("owner_id", Id, nullable=False),
        sa.Column("hits", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("todo_id", name="pk_todo_hits"),
        sa.ForeignKeyConstraint(
            ["todo_id"], ["todos.id"], name="fk_todo_hits_todo_id_todos", ondelete="CASCADE"
        ),
        sa.ForeignKeyConstraint(
            ["owner_id"], ["users.id"], name="fk_todo_hits_owner_id_users", ondelete="CASCADE"
        ),
    )
    op.create_index("ix_todo_hits_owner_id_hits", "todo_hits", ["owner_id", "hits"])
    op.create_table(
        "hit_batches",
        sa.Column("id", sa.String(64), nullable=False),
        sa.Column("applied_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_hit_batches"),
    )
    op.create_index("ix_hit_batches_applied_at", "hit_batches", ["applied_at"])


def downgrade() -> None:
    op.drop_index("ix_hit_batches_applied_at", table_name="hit_batches")
    op.drop_table("hit_batches")
    op.drop_index("ix_todo_hits_owner_id_hits", table_name="todo_hits")
    op.drop_table("todo_hits")
