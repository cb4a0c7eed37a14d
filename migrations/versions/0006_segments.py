"""segment mode: segments, work items, the job's counters

Revision ID: 0006
Revises: 0005
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

COUNTERS = ("segments_done", "segments_total", "chunks_done", "chunks_total")


def upgrade() -> None:
    with op.batch_alter_table("jobs") as batch:
        batch.add_column(sa.Column("segment_seconds", sa.Float(), nullable=True))
        batch.add_column(sa.Column("segment_length", sa.Float(), nullable=True))
        batch.add_column(sa.Column("image_cap", sa.Integer(), nullable=True))
        batch.add_column(
            sa.Column("frames_per_segment", sa.Integer(), nullable=False, server_default="4")
        )
        for name in COUNTERS:
            batch.add_column(sa.Column(name, sa.Integer(), nullable=False, server_default="0"))
    op.create_table(
        "job_segments",
        sa.Column("job_id", sa.Uuid(), nullable=False),
        sa.Column("index", sa.Integer(), nullable=False),
        sa.Column("start", sa.Float(), nullable=False),
        sa.Column("end", sa.Float(), nullable=False),
        sa.Column("planned_times", sa.JSON(), nullable=False),
        sa.Column("frame_times", sa.JSON(), nullable=True),
        sa.Column("caption", sa.Text(), nullable=True),
        sa.Column("segment_metadata", sa.JSON(), nullable=True),
        sa.Column("parsed", sa.Boolean(), nullable=False),
        sa.Column("details", sa.JSON(), nullable=True),
        sa.Column("prompt_tokens", sa.Integer(), nullable=False),
        sa.Column("completion_tokens", sa.Integer(), nullable=False),
        sa.Column("vision_seconds", sa.Float(), nullable=False),
        sa.Column("vision_retries", sa.Integer(), nullable=False),
        sa.Column("captioned_at", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(
            ["job_id"], ["jobs.id"], name=op.f("fk_job_segments_job_id_jobs"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("job_id", "index", name=op.f("pk_job_segments")),
    )
    op.create_table(
        "job_work_items",
        sa.Column("job_id", sa.Uuid(), nullable=False),
        sa.Column("index", sa.Integer(), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("first", sa.Integer(), nullable=False),
        sa.Column("last", sa.Integer(), nullable=False),
        sa.Column("start", sa.Float(), nullable=True),
        sa.Column("end", sa.Float(), nullable=True),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("worker_id", sa.String(length=200), nullable=True),
        sa.Column("lease_expires_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("result", sa.LargeBinary(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["job_id"],
            ["jobs.id"],
            name=op.f("fk_job_work_items_job_id_jobs"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("job_id", "index", name=op.f("pk_job_work_items")),
    )
    op.create_index(
        "ix_job_work_items_status_lease", "job_work_items", ["status", "lease_expires_at"]
    )


def downgrade() -> None:
    op.drop_index("ix_job_work_items_status_lease", table_name="job_work_items")
    op.drop_table("job_work_items")
    op.drop_table("job_segments")
    with op.batch_alter_table("jobs") as batch:
        for name in reversed(COUNTERS):
            batch.drop_column(name)
        batch.drop_column("frames_per_segment")
        batch.drop_column("segment_length")
        batch.drop_column("image_cap")
        batch.drop_column("segment_seconds")
