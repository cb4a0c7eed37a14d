"""cost controls: reuse keys, token budgets per job, token quotas per key

Revision ID: 0008
Revises: 0007
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0008"
down_revision: str | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("jobs") as batch:
        batch.add_column(sa.Column("max_total_tokens", sa.BigInteger(), nullable=True))
        batch.add_column(sa.Column("media_sha256", sa.String(length=64), nullable=True))
        batch.add_column(sa.Column("reuse_key", sa.String(length=64), nullable=True))
        for name in ("tokens_spent", "tokens_held"):
            batch.add_column(sa.Column(name, sa.BigInteger(), nullable=False, server_default="0"))
    op.create_index("ix_jobs_owner_reuse", "jobs", ["api_key_id", "reuse_key"])
    with op.batch_alter_table("api_keys") as batch:
        batch.add_column(sa.Column("tokens_per_day", sa.BigInteger(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("api_keys") as batch:
        batch.drop_column("tokens_per_day")
    op.drop_index("ix_jobs_owner_reuse", table_name="jobs")
    with op.batch_alter_table("jobs") as batch:
        batch.drop_column("tokens_held")
        batch.drop_column("tokens_spent")
        batch.drop_column("reuse_key")
        batch.drop_column("media_sha256")
        batch.drop_column("max_total_tokens")
