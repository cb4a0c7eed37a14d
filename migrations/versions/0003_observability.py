"""observability: per-frame vision latency, retries and thumbnail; per-stage timings

Revision ID: 0003
Revises: 0002
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("job_frames") as batch:
        batch.add_column(
            sa.Column("vision_seconds", sa.Float(), nullable=False, server_default="0")
        )
        batch.add_column(
            sa.Column("vision_retries", sa.Integer(), nullable=False, server_default="0")
        )
        batch.add_column(sa.Column("thumbnail", sa.LargeBinary(), nullable=True))
    op.create_table(
        "job_stage_timings",
        sa.Column("job_id", sa.Uuid(), nullable=False),
        sa.Column("stage", sa.String(length=32), nullable=False),
        sa.Column("seconds", sa.Float(), nullable=False),
        sa.ForeignKeyConstraint(
            ["job_id"],
            ["jobs.id"],
            name=op.f("fk_job_stage_timings_job_id_jobs"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("job_id", "stage", name=op.f("pk_job_stage_timings")),
    )


def downgrade() -> None:
    op.drop_table("job_stage_timings")
    with op.batch_alter_table("job_frames") as batch:
        batch.drop_column("thumbnail")
        batch.drop_column("vision_retries")
        batch.drop_column("vision_seconds")
