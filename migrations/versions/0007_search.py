"""search: passages of completed jobs, full-text indexed

Revision ID: 0007
Revises: 0006

PostgreSQL: a generated tsvector column with a GIN index. SQLite (dev): an FTS5 table kept
in step by triggers. Jobs completed before this revision are indexed here.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import TSVECTOR

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

JOBS = sa.table(
    "jobs",
    sa.column("id", sa.Uuid()),
    sa.column("api_key_id", sa.Uuid()),
    sa.column("status", sa.String()),
    sa.column("results", sa.JSON()),
)
SQLITE_FTS = (
    "CREATE VIRTUAL TABLE passages_fts USING fts5(text, content='passages', "
    "content_rowid='id', tokenize='porter unicode61')",
    "CREATE TRIGGER passages_added AFTER INSERT ON passages BEGIN "
    "INSERT INTO passages_fts(rowid, text) VALUES (new.id, new.text); END",
    "CREATE TRIGGER passages_removed AFTER DELETE ON passages BEGIN "
    "INSERT INTO passages_fts(passages_fts, rowid, text) VALUES ('delete', old.id, old.text); END",
)


def upgrade() -> None:
    postgres = op.get_bind().dialect.name == "postgresql"
    columns = [
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            primary_key=True,
            autoincrement=True,
        ),
        sa.Column("job_id", sa.Uuid(), nullable=False),
        sa.Column("api_key_id", sa.Uuid(), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("start", sa.Float(), nullable=False),
        sa.Column("end", sa.Float(), nullable=False),
        sa.Column("text", sa.Text(), nullable=False),
    ]
    if postgres:
        columns.append(
            sa.Column(
                "tsv",
                TSVECTOR(),
                sa.Computed("to_tsvector('english', text)", persisted=True),
                nullable=True,
            )
        )
    op.create_table(
        "passages",
        *columns,
        sa.ForeignKeyConstraint(
            ["job_id"], ["jobs.id"], name=op.f("fk_passages_job_id_jobs"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_passages")),
    )
    op.create_index("ix_passages_job_start", "passages", ["job_id", "start"])
    if postgres:
        op.create_index("ix_passages_tsv", "passages", ["tsv"], postgresql_using="gin")
    else:
        for statement in SQLITE_FTS:
            op.execute(statement)
    _index_completed_jobs()


def _index_completed_jobs() -> None:
    from db.search import passages_of  # the same rule the worker indexes new jobs by

    connection = op.get_bind()
    passages = sa.table(
        "passages",
        sa.column("job_id", sa.Uuid()),
        sa.column("api_key_id", sa.Uuid()),
        sa.column("kind", sa.String()),
        sa.column("start", sa.Float()),
        sa.column("end", sa.Float()),
        sa.column("text", sa.Text()),
    )
    done = connection.execute(
        sa.select(JOBS.c.id, JOBS.c.api_key_id, JOBS.c.results).where(JOBS.c.status == "COMPLETED")
    )
    for job_id, api_key_id, results in done:
        rows = [
            {"job_id": job_id, "api_key_id": api_key_id, **passage}
            for passage in passages_of(results or {})
        ]
        if rows:
            connection.execute(passages.insert(), rows)


def downgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        op.execute("DROP TABLE passages_fts")
    op.drop_table("passages")
