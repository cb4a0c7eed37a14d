"""Captions already paid for, found again (docs/api.md, "Cost controls"): a completed job of
the same key with the same reuse key, and copies of its captioned frames or segments."""

from __future__ import annotations

import uuid

from sqlalchemy import Table, func, insert, literal, select, update
from sqlalchemy.orm import Session, undefer

from db.models import Job, JobFrame, JobSegment
from scenecap.core.enums import JobStatus

# What a copy does not take from its source: its own job, and tokens it never spent.
_NOT_COPIED = {"job_id", "prompt_tokens", "completion_tokens"}


def set_reuse_key(session: Session, job_id: uuid.UUID, sha256: str, reuse_key: str) -> None:
    session.execute(
        update(Job).where(Job.id == job_id).values(media_sha256=sha256, reuse_key=reuse_key)
    )


def forget(session: Session, job_id: uuid.UUID) -> None:
    """Never offer this job's captions for reuse (its plan was cut short)."""
    session.execute(update(Job).where(Job.id == job_id).values(reuse_key=None))


def reusable_job(
    session: Session, api_key_id: uuid.UUID, reuse_key: str, *, besides: uuid.UUID
) -> Job | None:
    """The key's newest completed job with this reuse key (never another key's)."""
    return session.scalar(
        select(Job)
        .options(undefer(Job.results))
        .where(
            Job.api_key_id == api_key_id,
            Job.reuse_key == reuse_key,
            Job.status == JobStatus.COMPLETED,
            Job.id != besides,
        )
        .order_by(Job.completed_at.desc())
        .limit(1)
    )


def copy_captions(session: Session, source: uuid.UUID, target: uuid.UUID) -> tuple[int, int]:
    """Copy the source job's captioned frames and segments to the target job; how many."""
    return _copy(session, JobFrame.__table__, source, target), _copy(  # type: ignore[arg-type]
        session,
        JobSegment.__table__,  # type: ignore[arg-type]
        source,
        target,
    )


def _copy(session: Session, table: Table, source: uuid.UUID, target: uuid.UUID) -> int:
    kept = [c for c in table.columns if c.name not in _NOT_COPIED]
    columns = [
        literal(target, table.c.job_id.type).label("job_id"),
        *kept,
        *(literal(0).label(name) for name in ("prompt_tokens", "completion_tokens")),
    ]
    names = ["job_id", *(c.name for c in kept), "prompt_tokens", "completion_tokens"]
    selected = select(*columns).where(table.c.job_id == source)
    session.execute(insert(table).from_select(names, selected))
    # An INSERT ... SELECT's rowcount is not reported by every driver: count what is there.
    copied = session.scalar(select(func.count()).where(table.c.job_id == target))
    return int(copied or 0)
