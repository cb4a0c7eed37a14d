"""tenancy: a spend ledger per key and UTC day, quota reservations on jobs, tombstones of
purged jobs, and search indexes scoped by key

Revision ID: 0009
Revises: 0008
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0009"
down_revision: str | None = "0008"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "key_spend",
        sa.Column(
            "api_key_id",
            sa.Uuid(),
            sa.ForeignKey(
                "api_keys.id", ondelete="CASCADE", name="fk_key_spend_api_key_id_api_keys"
            ),
            primary_key=True,
        ),
        sa.Column("day", sa.Date(), primary_key=True),
        *(
            sa.Column(name, sa.BigInteger(), nullable=False, server_default="0")
            for name in ("prompt_tokens", "completion_tokens", "total_tokens", "frames", "segments")
        ),
        sa.Column("audio_seconds", sa.Float(), nullable=False, server_default="0"),
        sa.PrimaryKeyConstraint("api_key_id", "day", name="pk_key_spend"),
    )
    with op.batch_alter_table("jobs") as batch:
        batch.add_column(sa.Column("tokens_reserved", sa.BigInteger(), nullable=True))
    op.create_table(
        "purged_jobs",
        sa.Column("job_id", sa.Uuid(), nullable=False),
        sa.Column("purged_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("job_id", name="pk_purged_jobs"),
    )
    # What jobs spent so far, as the ledger would have counted it (by the day they began).
    bind = op.get_bind()
    postgres = bind.dialect.name == "postgresql"
    day = "date(timezone('UTC', created_at))" if postgres else "date(created_at)"

    def summed(name: str, kind: str) -> str:
        figure = f"(usage ->> '{name}')" if postgres else f"json_extract(usage, '$.{name}')"
        return f"SUM(CAST(COALESCE({figure}, '0') AS {kind}))"

    counts = ("prompt_tokens", "completion_tokens", "total_tokens", "frames", "segments")
    sums = ", ".join(
        [*(summed(name, "BIGINT") for name in counts), summed("audio_seconds", "FLOAT")]
    )
    op.execute(
        f"INSERT INTO key_spend (api_key_id, day, {', '.join(counts)}, audio_seconds) "
        f"SELECT api_key_id, {day}, {sums} FROM jobs "
        f"WHERE usage IS NOT NULL GROUP BY api_key_id, {day}"
    )
    if postgres:
        # A key's search reads its own passages only: the key and the words in one index.
        op.execute("CREATE EXTENSION IF NOT EXISTS btree_gin")
        op.drop_index("ix_passages_tsv", table_name="passages")
        op.create_index(
            "ix_passages_key_tsv", "passages", ["api_key_id", "tsv"], postgresql_using="gin"
        )
    else:
        op.create_index("ix_passages_key", "passages", ["api_key_id"])


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.drop_index("ix_passages_key_tsv", table_name="passages")
        op.create_index("ix_passages_tsv", "passages", ["tsv"], postgresql_using="gin")
    else:
        op.drop_index("ix_passages_key", table_name="passages")
    op.drop_table("purged_jobs")
    with op.batch_alter_table("jobs") as batch:
        batch.drop_column("tokens_reserved")
    op.drop_table("key_spend")
