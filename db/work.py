"""Work spread over workers, and what a job may spend: a segment-mode job's segments and the
work items any worker may take (scene chunks, speech chunks, batches of segments;
docs/architecture.md, "Long videos"), and the token holds every job's model requests take
against its budget (docs/api.md, "Cost controls"). Every state change is a conditional
UPDATE, so a late or duplicate task never undoes another's work."""

from __future__ import annotations

import enum
import uuid
from collections.abc import Sequence
from datetime import timedelta
from typing import Any, Protocol

from sqlalchemy import ColumnElement, and_, case, exists, func, or_, select, update
from sqlalchemy.orm import Session

from db.models import Job, JobSegment, WorkItem
from db.session import enqueue, rowcount
from scenecap.core.enums import JobStatus, utcnow
from scenecap.core.tasks import RUN_WORK_ITEM


class PlannedSegmentLike(Protocol):
    """A segment as planned (worker.pipeline.segments.PlannedSegment)."""

    @property
    def index(self) -> int: ...
    @property
    def start(self) -> float: ...
    @property
    def end(self) -> float: ...
    @property
    def frame_times(self) -> tuple[float, ...]: ...


class ItemKind(enum.StrEnum):
    SCENES = "scenes"  # one chunk of scene detection
    SPEECH = "speech"  # one chunk of the sound, transcribed
    SEGMENTS = "segments"  # caption a batch of segments
    SUMMARY = "summary"  # chapters, description, results


PENDING, PROCESSING, DONE = "PENDING", "PROCESSING", "DONE"


def add_items(
    session: Session, job_id: uuid.UUID, items: list[dict[str, Any]], grace_seconds: int
) -> list[int]:
    """Add work items after the job's last one; each is queued when this transaction commits
    (and queued again by the reaper if `grace_seconds` pass before a worker takes it)."""
    start = session.scalar(
        select(func.coalesce(func.max(WorkItem.index) + 1, 0)).where(WorkItem.job_id == job_id)
    )
    waiting_until = utcnow() + timedelta(seconds=grace_seconds)
    indexes = []
    for offset, fields in enumerate(items):
        index = int(start or 0) + offset
        session.add(WorkItem(job_id=job_id, index=index, lease_expires_at=waiting_until, **fields))
        indexes.append(index)
    session.flush()
    for index in indexes:
        enqueue(session, RUN_WORK_ITEM, str(job_id), index)
    return indexes


def items_of(session: Session, job_id: uuid.UUID, kind: ItemKind) -> list[WorkItem]:
    return list(
        session.scalars(
            select(WorkItem)
            .where(WorkItem.job_id == job_id, WorkItem.kind == kind)
            .order_by(WorkItem.index)
        )
    )


def claim_item(
    session: Session, job_id: uuid.UUID, index: int, worker_id: str, lease_seconds: int
) -> WorkItem | None:
    """Take a work item for this worker: only a pending one, or one whose lease lapsed, and
    only while its job runs."""
    now = utcnow()
    claimable = or_(
        WorkItem.status == PENDING,
        and_(WorkItem.status == PROCESSING, WorkItem.lease_expires_at < now),
    )
    running = exists().where(Job.id == job_id, Job.status == JobStatus.PROCESSING)
    result = session.execute(
        update(WorkItem)
        .where(WorkItem.job_id == job_id, WorkItem.index == index, claimable, running)
        .values(
            status=PROCESSING,
            attempts=WorkItem.attempts + 1,
            worker_id=worker_id,
            lease_expires_at=now + timedelta(seconds=lease_seconds),
            updated_at=now,
        )
    )
    if rowcount(result) != 1:
        return None
    return session.scalar(
        select(WorkItem)
        .where(WorkItem.job_id == job_id, WorkItem.index == index)
        .execution_options(populate_existing=True)
    )


def renew_item(session: Session, job_id: uuid.UUID, index: int, lease_seconds: int) -> None:
    now = utcnow()
    session.execute(
        update(WorkItem)
        .where(WorkItem.job_id == job_id, WorkItem.index == index, WorkItem.status == PROCESSING)
        .values(lease_expires_at=now + timedelta(seconds=lease_seconds), updated_at=now)
    )


def finish_item(
    session: Session, job_id: uuid.UUID, index: int, result: bytes | None = None
) -> bool:
    """Mark an item DONE; False if it was already (a duplicate task finished it first)."""
    outcome = session.execute(
        update(WorkItem)
        .where(WorkItem.job_id == job_id, WorkItem.index == index, WorkItem.status != DONE)
        .values(status=DONE, result=result, lease_expires_at=None, updated_at=utcnow())
    )
    return rowcount(outcome) == 1


def release_item(session: Session, job_id: uuid.UUID, index: int, worker_id: str) -> None:
    """Let go of an item this worker stopped without finishing (its job was cancelled or
    failed): nobody holds it any more."""
    session.execute(
        update(WorkItem)
        .where(
            WorkItem.job_id == job_id,
            WorkItem.index == index,
            WorkItem.status == PROCESSING,
            WorkItem.worker_id == worker_id,
        )
        .values(status=PENDING, lease_expires_at=utcnow(), updated_at=utcnow())
    )


def lapsed_items(session: Session, limit: int = 500) -> list[WorkItem]:
    """Items of running jobs nobody is working on: leased and lapsed, or never taken."""
    running = exists().where(Job.id == WorkItem.job_id, Job.status == JobStatus.PROCESSING)
    return list(
        session.scalars(
            select(WorkItem)
            .where(
                WorkItem.status.in_((PENDING, PROCESSING)),
                WorkItem.lease_expires_at < utcnow(),
                running,
            )
            .order_by(WorkItem.updated_at)
            .limit(limit)
        )
    )


def requeue_item(
    session: Session, item: WorkItem, grace_seconds: int, countdown: float = 0.0
) -> None:
    """Queue an item again (for when this transaction commits, after `countdown` seconds):
    a lapsed one, or one put back after a passing outage."""
    now = utcnow()
    session.execute(
        update(WorkItem)
        .where(WorkItem.job_id == item.job_id, WorkItem.index == item.index)
        .values(
            status=PENDING,
            lease_expires_at=now + timedelta(seconds=grace_seconds),
            updated_at=now,
        )
    )
    enqueue(session, RUN_WORK_ITEM, str(item.job_id), item.index, countdown=countdown)


def results_of(session: Session, job_id: uuid.UUID, kind: ItemKind) -> list[bytes]:
    """The results of the job's chunks of one kind (scenes, speech), in time order; empty
    bytes for one not done."""
    query = (
        select(WorkItem.result)
        .where(WorkItem.job_id == job_id, WorkItem.kind == kind)
        .order_by(WorkItem.first)
    )
    return [bytes(result or b"") for result in session.scalars(query)]


def count_done(session: Session, job_id: uuid.UUID, counter: str) -> tuple[int, int]:
    """One more of the job's segments (or chunks: scenes and speech) is done: (done, total)
    after it.

    The UPDATE locks the job's row, so of two items finishing at once, exactly one sees the
    count reach the total.
    """
    done, total = getattr(Job, f"{counter}_done"), getattr(Job, f"{counter}_total")
    row = session.execute(
        update(Job).where(Job.id == job_id).values({done: done + 1}).returning(done, total)
    ).one()
    return int(row[0]), int(row[1])


def set_totals(session: Session, job_id: uuid.UUID, **totals: float) -> None:
    """Set the job's counters (and the segment length the plan used)."""
    session.execute(update(Job).where(Job.id == job_id).values(**totals))


def add_segments(
    session: Session, job_id: uuid.UUID, planned: Sequence[PlannedSegmentLike]
) -> None:
    session.add_all(
        JobSegment(
            job_id=job_id,
            index=segment.index,
            start=segment.start,
            end=segment.end,
            planned_times=list(segment.frame_times),
        )
        for segment in planned
    )
    session.flush()


def segments_of(
    session: Session, job_id: uuid.UUID, first: int = 0, last: int | None = None
) -> list[JobSegment]:
    query = select(JobSegment).where(JobSegment.job_id == job_id, JobSegment.index >= first)
    if last is not None:
        query = query.where(JobSegment.index <= last)
    return list(session.scalars(query.order_by(JobSegment.index)))


def store_segment(session: Session, job_id: uuid.UUID, index: int, **fields: Any) -> bool:
    """Store a segment's caption; False if it was stored already (a racing retry)."""
    result = session.execute(
        update(JobSegment)
        .where(
            JobSegment.job_id == job_id,
            JobSegment.index == index,
            JobSegment.captioned_at.is_(None),
        )
        .values(captioned_at=utcnow(), **fields)
    )
    return rowcount(result) == 1


# The details of a segment left out because the job's budget would not cover it.
_SKIPPED = "skipped"


def skip_segment(session: Session, job_id: uuid.UUID, index: int) -> bool:
    """Store a segment as left out for the job's max_total_tokens: done, with no caption.
    False if it was stored already."""
    return store_segment(
        session, job_id, index, frame_times=[], details={_SKIPPED: "max_total_tokens"}
    )


def captioned_segments(session: Session, job_id: uuid.UUID) -> list[JobSegment]:
    """The job's segments that have a caption (none still to do, none left out), in order."""
    return [
        s
        for s in segments_of(session, job_id)
        if s.captioned_at is not None and not (s.details or {}).get(_SKIPPED)
    ]


def token_cap() -> ColumnElement[Any]:
    """The most a job may spend: its max_total_tokens, or what the key's quota reserved for
    it, whichever is less (NULL: no cap)."""
    asked, reserved = Job.max_total_tokens, Job.tokens_reserved
    return case(
        (asked.is_(None), reserved),
        (reserved.is_(None), asked),
        (asked < reserved, asked),
        else_=reserved,
    )


def hold_tokens(session: Session, job_id: uuid.UUID, estimate: int, reserve: int) -> bool:
    """Hold `estimate` tokens of the job's cap for a request about to be sent, keeping
    `reserve` back (the summary's); False if that would pass the cap."""
    result = session.execute(
        update(Job)
        .where(
            Job.id == job_id,
            or_(
                token_cap().is_(None),
                Job.tokens_spent + Job.tokens_held + estimate + reserve <= token_cap(),
            ),
        )
        .values(tokens_held=Job.tokens_held + estimate)
    )
    return rowcount(result) == 1


def tokens_fit(session: Session, job_id: uuid.UUID, tokens: int) -> bool:
    """Whether `tokens` more fit the job's cap beside what is spent and held."""
    row = session.execute(
        select(Job.tokens_spent + Job.tokens_held, token_cap()).where(Job.id == job_id)
    ).one_or_none()
    if row is None or row[1] is None:
        return True
    return int(row[0]) + tokens <= int(row[1])


def settle_tokens(session: Session, job_id: uuid.UUID, estimate: int, reported: int) -> None:
    """A request held with `estimate` came back having cost `reported` tokens."""
    session.execute(
        update(Job)
        .where(Job.id == job_id)
        .values(tokens_held=Job.tokens_held - estimate, tokens_spent=Job.tokens_spent + reported)
    )


def lower_image_cap(session: Session, job_id: uuid.UUID, limit: int) -> bool:
    """Record that the job's model takes at most `limit` images a request; False if the job
    knew that already (so it is said once)."""
    result = session.execute(
        update(Job)
        .where(Job.id == job_id, or_(Job.image_cap.is_(None), Job.image_cap > limit))
        .values(image_cap=limit)
    )
    return rowcount(result) == 1
