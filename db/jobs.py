"""Job repository. Every state change is a conditional UPDATE, so a cancelled or finished
job is never overwritten by a late worker write."""

from __future__ import annotations

import functools
import uuid
from datetime import datetime, timedelta
from typing import Any, cast

from sqlalchemy import Table, and_, bindparam, case, delete, func, insert, or_, select, update
from sqlalchemy.orm import Session, undefer

from db import search, webhooks
from db.models import ApiKey, Job, PurgedJob
from db.session import rowcount
from scenecap.core.enums import JobKind, JobStage, JobStatus, utcnow

ACTIVE = (JobStatus.PENDING, JobStatus.PROCESSING)


def create_job(session: Session, **fields: Any) -> Job:
    job = Job(**fields)
    session.add(job)
    session.flush()
    return job


def insert_job(session: Session, **fields: Any) -> uuid.UUID:
    """Store a new PENDING job; return its id. `webhook_url` None: the key's default, read by
    the INSERT itself (one round trip less). The API's submissions use this rather than
    create_job: an INSERT with RETURNING costs a third of the ORM's flush of a new object,
    and the statement is built once per set of fields (building it was half its cost)."""
    statement = _insert_job(tuple(sorted(fields)))
    job_id: uuid.UUID = session.execute(statement, fields).scalar_one()
    return job_id


@functools.cache
def _insert_job(names: tuple[str, ...]) -> Any:
    table = cast(Table, Job.__table__)
    values: dict[str, Any] = {name: bindparam(name, type_=table.c[name].type) for name in names}
    if "webhook_url" in values:
        default = select(ApiKey.default_webhook_url).where(
            ApiKey.id == bindparam("api_key_id", type_=table.c.api_key_id.type)
        )
        values["webhook_url"] = func.coalesce(values["webhook_url"], default.scalar_subquery())
    return insert(table).values(values).returning(table.c.id)


def get_owned_job(
    session: Session,
    job_id: uuid.UUID,
    api_key_id: uuid.UUID,
    kind: JobKind = JobKind.CATEGORIES,
) -> Job | None:
    """Return the job of this kind with its results if it belongs to the key, else None."""
    return session.scalar(
        select(Job)
        .options(undefer(Job.results))
        .where(Job.id == job_id, Job.api_key_id == api_key_id, Job.kind == kind)
    )


def exists(session: Session, job_id: uuid.UUID) -> bool:
    """Whether the job is still there (not purged)."""
    return session.scalar(select(Job.id).where(Job.id == job_id)) is not None


def is_owned(session: Session, job_id: uuid.UUID, api_key_id: uuid.UUID) -> bool:
    """Whether the key has a media job of this id (nothing of the job is loaded)."""
    found = session.scalar(
        select(Job.id).where(
            Job.id == job_id, Job.api_key_id == api_key_id, Job.kind == JobKind.CATEGORIES
        )
    )
    return found is not None


def get_job(
    session: Session, job_id: uuid.UUID, *, with_media: bool = False, with_results: bool = False
) -> Job | None:
    query = select(Job).where(Job.id == job_id)
    if with_results:
        query = query.options(undefer(Job.results))
    if with_media:
        query = query.options(undefer(Job.media_data), undefer(Job.request))
    return session.scalar(query)


def find_by_idempotency_key(session: Session, api_key_id: uuid.UUID, key: str) -> Job | None:
    return session.scalar(
        select(Job)
        .options(undefer(Job.results))
        .where(Job.api_key_id == api_key_id, Job.idempotency_key == key)
    )


def hashes_by_idempotency_prefix(
    session: Session, api_key_id: uuid.UUID, prefix: str
) -> dict[str, str | None]:
    """The key's jobs whose Idempotency-Key starts with `prefix`: key -> request hash."""
    rows = session.execute(
        select(Job.idempotency_key, Job.request_hash).where(
            Job.api_key_id == api_key_id,
            Job.idempotency_key.startswith(prefix, autoescape=True),
        )
    )
    return {str(key): request_hash for key, request_hash in rows}


def cancel_job(session: Session, job_id: uuid.UUID) -> bool:
    """Mark an active job CANCELLED; a running worker notices at its next checkpoint."""
    now = utcnow()
    result = session.execute(
        update(Job)
        .where(Job.id == job_id, Job.status.in_(ACTIVE))
        .values(status=JobStatus.CANCELLED, updated_at=now, completed_at=now, lease_expires_at=None)
    )
    return _ended(session, job_id, rowcount(result))


def claim_job(
    session: Session, job_id: uuid.UUID, worker_id: str, lease_seconds: int
) -> Job | None:
    """Take the job for this worker: PROCESSING, one more attempt, a fresh lease.

    Only a PENDING job, or a PROCESSING one whose lease has expired, can be claimed: a
    duplicate message must not start a second run beside a live one.
    """
    now = utcnow()
    claimable = or_(
        Job.status == JobStatus.PENDING,
        and_(Job.status == JobStatus.PROCESSING, Job.lease_expires_at < now),
    )
    result = session.execute(
        update(Job)
        .where(Job.id == job_id, claimable)
        .values(
            status=JobStatus.PROCESSING,
            attempts=Job.attempts + 1,
            worker_id=worker_id,
            heartbeat_at=now,
            lease_expires_at=now + timedelta(seconds=lease_seconds),
            started_at=func.coalesce(Job.started_at, now),
            updated_at=now,
        )
    )
    if rowcount(result) != 1:
        return None
    session.expire_all()
    return get_job(session, job_id, with_media=True)


def record_progress(
    session: Session,
    job_id: uuid.UUID,
    *,
    stage: JobStage,
    percent: int,
    lease_seconds: int | None,
) -> bool:
    """Write stage and percent (never lowering it) and renew the lease.

    Without `lease_seconds` the job is in the hands of its work items (segment mode): it has
    no lease of its own to renew, and since tasks on many workers report at once, the stage
    follows the highest percent rather than the last writer.

    Returns False when the job is no longer PROCESSING (cancelled or finished elsewhere).
    """
    now = utcnow()
    values: dict[str, Any] = {
        "stage": stage,
        "percent_complete": case(
            (Job.percent_complete < percent, percent), else_=Job.percent_complete
        ),
        "heartbeat_at": now,
        "updated_at": now,
    }
    if lease_seconds is None:
        values["stage"] = case((Job.percent_complete <= percent, stage), else_=Job.stage)
    else:
        values["lease_expires_at"] = now + timedelta(seconds=lease_seconds)
    result = session.execute(
        update(Job).where(Job.id == job_id, Job.status == JobStatus.PROCESSING).values(values)
    )
    return rowcount(result) == 1


def hand_over(session: Session, job_id: uuid.UUID) -> None:
    """The job's work is now in work items with leases of their own: the job keeps none, so
    neither the reaper nor a duplicate message takes it up again."""
    session.execute(update(Job).where(Job.id == job_id).values(lease_expires_at=None))


def set_media_info(session: Session, job_id: uuid.UUID, media_info: dict[str, Any]) -> None:
    session.execute(update(Job).where(Job.id == job_id).values(media_info=media_info))


def complete_job(
    session: Session, job_id: uuid.UUID, *, results: dict[str, Any], usage: dict[str, Any]
) -> bool:
    """Mark a running job COMPLETED with its results; False if it was cancelled meanwhile."""
    now = utcnow()
    result = session.execute(
        update(Job)
        .where(Job.id == job_id, Job.status == JobStatus.PROCESSING)
        .values(
            status=JobStatus.COMPLETED,
            stage=JobStage.DONE,
            percent_complete=100,
            results=results,
            usage=usage,
            updated_at=now,
            completed_at=now,
            lease_expires_at=None,
        )
    )
    ended = _ended(session, job_id, rowcount(result))
    if ended:  # searchable from the moment it is COMPLETED
        search.index_job(session, job_id, results)
    return ended


def fail_job(session: Session, job_id: uuid.UUID, *, code: str, message: str) -> bool:
    """Mark an active job FAILED with an error code; False if it already ended."""
    now = utcnow()
    result = session.execute(
        update(Job)
        .where(Job.id == job_id, Job.status.in_(ACTIVE))
        .values(
            status=JobStatus.FAILED,
            error_code=code,
            error_message=message[:2000],
            updated_at=now,
            completed_at=now,
            lease_expires_at=None,
        )
    )
    return _ended(session, job_id, rowcount(result))


def _ended(session: Session, job_id: uuid.UUID, rowcount: int) -> bool:
    """After a terminal update: write the webhook outbox row in the same transaction."""
    if rowcount != 1:
        return False
    webhooks.add_terminal_event(session, job_id)
    return True


def lapsed_jobs(session: Session, *, pending_grace_seconds: int, limit: int = 100) -> list[Job]:
    """Jobs nobody is working on: running with an expired lease, or pending and never picked up.

    A pending job whose queue message was lost (broker restarted, enqueue failed after commit)
    would otherwise wait forever.
    """
    now = utcnow()
    stale_pending = and_(
        Job.status == JobStatus.PENDING,
        func.coalesce(Job.lease_expires_at, Job.created_at) < now,
        Job.created_at < now - timedelta(seconds=pending_grace_seconds),
    )
    expired = and_(Job.status == JobStatus.PROCESSING, Job.lease_expires_at < now)
    return list(
        session.scalars(
            select(Job).where(or_(stale_pending, expired)).order_by(Job.created_at).limit(limit)
        )
    )


def requeue_job(session: Session, job_id: uuid.UUID, lease_seconds: int) -> bool:
    """Put a lapsed job back to PENDING, with one lease period to be picked up again."""
    result = session.execute(
        update(Job)
        .where(Job.id == job_id, Job.status.in_(ACTIVE))
        .values(
            status=JobStatus.PENDING,
            stage=JobStage.QUEUED,
            lease_expires_at=utcnow() + timedelta(seconds=lease_seconds),
            updated_at=utcnow(),
        )
    )
    return rowcount(result) == 1


def cancel_active_jobs(session: Session, api_key_id: uuid.UUID) -> int:
    """Cancel every PENDING or PROCESSING job of the key (its webhooks go in the outbox)."""
    active = session.scalars(
        select(Job.id).where(Job.api_key_id == api_key_id, Job.status.in_(ACTIVE))
    )
    return sum(cancel_job(session, job_id) for job_id in list(active))


def purge_job(session: Session, job_id: uuid.UUID) -> None:
    """Delete a job row (its frames, segments, passages, timings and webhook log go with it:
    ON DELETE CASCADE) and leave its tombstone, so what a late worker still writes under it
    is deleted too."""
    session.execute(delete(Job).where(Job.id == job_id))
    session.add(PurgedJob(job_id=job_id))


def purged_jobs(session: Session, limit: int = 500) -> list[PurgedJob]:
    """The tombstones of purged jobs, oldest first."""
    return list(session.scalars(select(PurgedJob).order_by(PurgedJob.purged_at).limit(limit)))


def bury(session: Session, job_ids: list[uuid.UUID]) -> None:
    """Forget tombstones whose jobs can have no late writer left."""
    session.execute(delete(PurgedJob).where(PurgedJob.job_id.in_(job_ids)))


def clear_media_data(session: Session, job_id: uuid.UUID) -> None:
    """Forget a data: URI's bytes once the media store holds them."""
    session.execute(update(Job).where(Job.id == job_id).values(media_data=None))


def jobs_with_expired_media(
    session: Session, ended_before: datetime, limit: int = 500
) -> list[uuid.UUID]:
    """Jobs that ended before the time and whose fetched media is still stored."""
    return list(
        session.scalars(
            select(Job.id)
            .where(
                Job.completed_at < ended_before,
                Job.media_deleted_at.is_(None),
                Job.status.in_((JobStatus.COMPLETED, JobStatus.FAILED, JobStatus.CANCELLED)),
            )
            .limit(limit)
        )
    )


def mark_media_deleted(session: Session, job_ids: list[uuid.UUID]) -> None:
    session.execute(update(Job).where(Job.id.in_(job_ids)).values(media_deleted_at=utcnow()))
