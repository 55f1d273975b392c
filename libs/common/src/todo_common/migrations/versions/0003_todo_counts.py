"""per-user todo counts

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-24
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

Id = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "todo_counts",
        sa.Column("owner_id", Id, nullable=False),
        sa.Column("todos", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("owner_id", name="pk_todo_counts"),
        sa.ForeignKeyConstraint(
            ["owner_id"], ["users.id"], name="fk_todo_counts_owner_id_users", ondelete="CASCADE"
        ),
    )
    # Existing todos are counted once, in the migration's transaction.
    op.execute(
        "INSERT INTO todo_counts (owner_id, todos) "
        "SELECT owner_id, count(*) FROM todos GROUP BY owner_id"
    )


def downgrade() -> None:
    op.drop_table("todo_counts")
