"""media store: uploads, thumbnails out of PostgreSQL, media retention

Revision ID: 0005
Revises: 0004

Thumbnail bytes move from job_frames to the configured media store (SCENECAP_MEDIA_STORE)
before their column goes; a downgrade brings back those the store still holds.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

FRAMES = sa.table(
    "job_frames",
    sa.column("job_id", sa.Uuid()),
    sa.column("index", sa.Integer()),
    sa.column("thumbnail", sa.LargeBinary()),
)


def upgrade() -> None:
    op.create_table(
        "uploads",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("api_key_id", sa.Uuid(), nullable=False),
        sa.Column("bytes", sa.BigInteger(), nullable=False),
        sa.Column("sha256", sa.String(length=64), nullable=False),
        sa.Column("content_type", sa.String(length=100), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["api_key_id"],
            ["api_keys.id"],
            name=op.f("fk_uploads_api_key_id_api_keys"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_uploads")),
    )
    op.create_index("ix_uploads_expires_at", "uploads", ["expires_at"])
    with op.batch_alter_table("jobs") as batch:
        batch.add_column(sa.Column("media_deleted_at", sa.DateTime(timezone=True), nullable=True))
    op.create_index("ix_jobs_media_retention", "jobs", ["media_deleted_at", "completed_at"])
    _thumbnails_to_store()
    with op.batch_alter_table("job_frames") as batch:
        batch.drop_column("thumbnail")


def downgrade() -> None:
    with op.batch_alter_table("job_frames") as batch:
        batch.add_column(sa.Column("thumbnail", sa.LargeBinary(), nullable=True))
    _thumbnails_from_store()
    op.drop_index("ix_jobs_media_retention", table_name="jobs")
    with op.batch_alter_table("jobs") as batch:
        batch.drop_column("media_deleted_at")
    op.drop_index("ix_uploads_expires_at", table_name="uploads")
    op.drop_table("uploads")


def _store():  # type: ignore[no-untyped-def]
    from scenecap.core.settings import get_settings
    from scenecap.store import open_store

    return open_store(get_settings())


def _thumbnails_to_store() -> None:
    from scenecap.store import paths

    connection = op.get_bind()
    rows = connection.execute(
        sa.select(FRAMES.c.job_id, FRAMES.c.index, FRAMES.c.thumbnail).where(
            FRAMES.c.thumbnail.is_not(None)
        )
    )
    store = None
    for job_id, index, thumbnail in rows:
        store = store or _store()  # only a database with thumbnails needs the store
        store.put(paths.thumbnail(job_id, index), thumbnail)


def _thumbnails_from_store() -> None:
    from scenecap.core.errors import StoredObjectMissing
    from scenecap.store import paths

    connection = op.get_bind()
    rows = list(connection.execute(sa.select(FRAMES.c.job_id, FRAMES.c.index)))
    store = _store() if rows else None
    for job_id, index in rows:
        try:
            thumbnail = store.get(paths.thumbnail(job_id, index))  # type: ignore[union-attr]
        except StoredObjectMissing:
            continue
        connection.execute(
            sa.update(FRAMES)
            .where(FRAMES.c.job_id == job_id, FRAMES.c.index == index)
            .values(thumbnail=thumbnail)
        )
