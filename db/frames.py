"""Job frame repository: one row per captioned frame, written as each frame finishes, and
the time each stage took."""

from __future__ import annotations

import json
import uuid
from typing import Any

from sqlalchemy import exists, func, literal, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from db.models import Job, JobFrame, JobStageTiming
from db.session import dialect_insert
from scenecap.core.enums import JobStage


def stored_frames(session: Session, job_id: uuid.UUID) -> list[JobFrame]:
    query = select(JobFrame).where(JobFrame.job_id == job_id).order_by(JobFrame.index)
    return list(session.scalars(query))


def save_frame(session: Session, job_id: uuid.UUID, **fields: Any) -> bool:
    """Insert a captioned frame; a frame stored already (a racing retry) is kept as it was.
    False if the job is gone (purged while its worker still ran)."""
    statement = dialect_insert(session)(JobFrame).values(job_id=job_id, **fields)
    try:
        with session.begin_nested():  # only this insert is undone if the job is gone
            session.execute(statement.on_conflict_do_nothing(index_elements=["job_id", "index"]))
    except IntegrityError:
        return False
    return True


def record_stage_time(
    session: Session, job_id: uuid.UUID, stage: str, seconds: float, *, add: bool = False
) -> None:
    """Store how long the job spent in a stage: a retried job's last attempt wins, unless
    `add` (a segment-mode job's tasks each add their own time)."""
    # Only while the job exists: a worker may still be timing a job purged meanwhile.
    values = select(literal(job_id, Job.id.type), literal(stage), literal(seconds)).where(
        exists().where(Job.id == job_id)
    )
    statement = dialect_insert(session)(JobStageTiming).from_select(
        ["job_id", "stage", "seconds"], values
    )
    total = JobStageTiming.seconds + statement.excluded.seconds if add else None
    session.execute(
        statement.on_conflict_do_update(
            index_elements=["job_id", "stage"],
            set_={"seconds": total if add else statement.excluded.seconds},
        )
    )


def stage_timings(session: Session, job_id: uuid.UUID) -> dict[str, float]:
    """Seconds the job spent in each stage, in pipeline order."""
    return read_timings(session.scalar(select(timings_of(session, job_id))))


def timings_of(session: Session, job_id: Any) -> Any:
    """A scalar subquery: the job's stage timings as one JSON object (stage -> seconds)."""
    aggregate = (
        func.json_object_agg
        if session.get_bind().dialect.name == "postgresql"
        else func.json_group_object
    )
    return (
        select(aggregate(JobStageTiming.stage, JobStageTiming.seconds))
        .where(JobStageTiming.job_id == job_id)
        .scalar_subquery()
    )


def read_timings(value: str | dict[str, float] | None) -> dict[str, float]:
    """What timings_of gave (JSON text from SQLite, a dict from PostgreSQL), in pipeline order
    (the enum's), not the database's."""
    found = json.loads(value) if isinstance(value, str) else (value or {})
    return {s.value: round(found[s.value], 3) for s in JobStage if s.value in found}
