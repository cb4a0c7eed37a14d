"""The spend ledger and the per-key lock that quotas are checked under (docs/api.md, "Cost
controls").

Every model call adds what it cost to its key's row for the UTC day, in the transaction that
stores the call's result, so nothing a job becomes afterwards (failed, cancelled, purged)
takes it back. A key's daily quota is checked against the ledger plus what its active jobs
still hold (their reservations less what they spent), under a lock on the key's row: two
submissions of one key never both see the same room.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import date
from typing import Any

from sqlalchemy import func, select, update
from sqlalchemy.orm import Session

from db.models import ApiKey, Job, KeySpend
from db.session import dialect_insert
from scenecap.core.enums import JobStatus, utcnow

ACTIVE = (JobStatus.PENDING, JobStatus.PROCESSING)
FIGURES = ("prompt_tokens", "completion_tokens", "total_tokens", "frames", "segments")


@dataclass(frozen=True)
class Spent:
    """What one model call (or a stored result) cost; add it with `record`."""

    prompt_tokens: int = 0
    completion_tokens: int = 0
    frames: int = 0
    segments: int = 0
    audio_seconds: float = 0.0

    @property
    def total_tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens

    def __bool__(self) -> bool:
        return any((self.total_tokens, self.frames, self.segments, self.audio_seconds))


def record(session: Session, api_key_id: uuid.UUID, spent: Spent, day: date | None = None) -> None:
    """Add what was spent to the key's ledger for the day (today, UTC)."""
    if not spent:
        return
    values: dict[str, Any] = {
        "prompt_tokens": spent.prompt_tokens,
        "completion_tokens": spent.completion_tokens,
        "total_tokens": spent.total_tokens,
        "frames": spent.frames,
        "segments": spent.segments,
        "audio_seconds": spent.audio_seconds,
    }
    statement = dialect_insert(session)(KeySpend).values(
        api_key_id=api_key_id, day=day or utcnow().date(), **values
    )
    added = {name: getattr(KeySpend, name) + statement.excluded[name] for name in values}
    session.execute(
        statement.on_conflict_do_update(index_elements=["api_key_id", "day"], set_=added)
    )


def lock_key(session: Session, api_key_id: uuid.UUID) -> None:
    """Hold the key's row until this transaction ends: quota and active-job checks of one key
    run one at a time (SQLite: the write takes the database's write lock)."""
    if session.get_bind().dialect.name == "postgresql":
        session.execute(select(ApiKey.id).where(ApiKey.id == api_key_id).with_for_update())
    else:
        session.execute(update(ApiKey).where(ApiKey.id == api_key_id).values(id=ApiKey.id))


def tokens_today(session: Session, api_key_id: uuid.UUID) -> int:
    """Tokens the key's model calls have cost since midnight UTC."""
    spent = session.scalar(
        select(KeySpend.total_tokens).where(
            KeySpend.api_key_id == api_key_id, KeySpend.day == utcnow().date()
        )
    )
    return int(spent or 0)


def tokens_held(session: Session, api_key_id: uuid.UUID, besides: uuid.UUID | None = None) -> int:
    """What the key's active jobs still hold of their reservations (less what they spent)."""
    outstanding = func.greatest if session.get_bind().dialect.name == "postgresql" else func.max
    query = select(
        func.coalesce(func.sum(outstanding(Job.tokens_reserved - Job.tokens_spent, 0)), 0)
    ).where(Job.api_key_id == api_key_id, Job.status.in_(ACTIVE), Job.tokens_reserved.is_not(None))
    if besides is not None:
        query = query.where(Job.id != besides)
    return int(session.scalar(query) or 0)


def count_active(session: Session, api_key_id: uuid.UUID, kind: str) -> int:
    """The key's jobs of this kind that are PENDING or PROCESSING."""
    query = (
        select(func.count())
        .select_from(Job)
        .where(Job.api_key_id == api_key_id, Job.kind == kind, Job.status.in_(ACTIVE))
    )
    return int(session.scalar(query) or 0)


def reserve_plan(
    session: Session, job_id: uuid.UUID, api_key_id: uuid.UUID, estimate: int
) -> int | None:
    """Under the key's lock: the job now reserves its plan's estimate, or all the quota has
    left (beside the day's spend and the other active jobs' holds) if that is less. Returns
    the reservation, the most the job may spend in all (None: the key has no quota now)."""
    lock_key(session, api_key_id)
    quota = session.scalar(select(ApiKey.tokens_per_day).where(ApiKey.id == api_key_id))
    reserved: int | None = None
    if quota is not None:
        spent = int(session.scalar(select(Job.tokens_spent).where(Job.id == job_id)) or 0)
        room = quota - tokens_today(session, api_key_id) - tokens_held(session, api_key_id, job_id)
        reserved = max(0, min(estimate, spent + room))
    session.execute(update(Job).where(Job.id == job_id).values(tokens_reserved=reserved))
    return reserved


def by_day(session: Session, api_key_id: uuid.UUID, first: date, last: date) -> list[KeySpend]:
    """The key's ledger rows from `first` to `last` (inclusive), in day order."""
    return list(
        session.scalars(
            select(KeySpend)
            .where(KeySpend.api_key_id == api_key_id, KeySpend.day.between(first, last))
            .order_by(KeySpend.day)
        )
    )


def by_key(session: Session) -> dict[uuid.UUID, dict[str, float]]:
    """Every key's ledger summed over all days (for /metrics)."""
    sums = [func.sum(getattr(KeySpend, name)).label(name) for name in (*FIGURES, "audio_seconds")]
    rows = session.execute(select(KeySpend.api_key_id, *sums).group_by(KeySpend.api_key_id))
    return {row[0]: dict(row._mapping) for row in rows}
