"""Job frame repository: one row per captioned frame, written as each frame finishes."""

from __future__ import annotations

import uuid
from typing import Any

from sqlalchemy import select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from db.models import JobFrame


def stored_frames(session: Session, job_id: uuid.UUID) -> list[JobFrame]:
    return list(
        session.scalars(select(JobFrame).where(JobFrame.job_id == job_id).order_by(JobFrame.index))
    )


def save_frame(session: Session, job_id: uuid.UUID, **fields: Any) -> None:
    """Insert a captioned frame; a frame stored already (a racing retry) is kept as it was."""
    dialect = session.get_bind().dialect.name
    insert = postgresql.insert if dialect == "postgresql" else sqlite.insert
    statement = insert(JobFrame).values(job_id=job_id, **fields)
    session.execute(statement.on_conflict_do_nothing(index_elements=["job_id", "index"]))
