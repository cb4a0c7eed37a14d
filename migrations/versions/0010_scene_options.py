"""the first hour: scene options per job (the detector's threshold, the shortest scene in
seconds), and the names media keep (an upload's file name, shown as the job's media_name)

Revision ID: 0010
Revises: 0009
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0010"
down_revision: str | None = "0009"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("jobs") as batch:
        batch.add_column(sa.Column("scene_threshold", sa.Float(), nullable=True))
        batch.add_column(sa.Column("min_scene_seconds", sa.Float(), nullable=True))
        batch.add_column(sa.Column("media_name", sa.String(length=255), nullable=True))
    with op.batch_alter_table("uploads") as batch:
        batch.add_column(sa.Column("name", sa.String(length=255), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("uploads") as batch:
        batch.drop_column("name")
    with op.batch_alter_table("jobs") as batch:
        batch.drop_column("media_name")
        batch.drop_column("min_scene_seconds")
        batch.drop_column("scene_threshold")
