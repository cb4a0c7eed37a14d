"""The spend ledger and the per-key lock that quotas are checked under (docs/api.md, "Cost
controls").

Every model call adds what it cost to its key's row for the UTC day, in the transaction that
stores the call's result, so nothing a job becomes afterwards (failed, cancelled, purged)
takes it back. A key's daily quota is checked against the ledger plus what its active jobs
still hold (their reservations less what they spent), under a lock on the key's row: two
submissions of one key never both see the same room.
"""

from __future__ import annotations

import functools
import uuid
from dataclasses import dataclass
from datetime import date
from typing import Any

from sqlalchemy import Table, Uuid, bindparam, func, or_, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from db.models import ApiKey, Job, KeySpend
from scenecap.core.enums import JobKind, JobStatus, utcnow

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
    session.execute(
        _upsert(session.get_bind().dialect.name),
        {
            "api_key_id": api_key_id,
            "day": day or utcnow().date(),
            "prompt_tokens": spent.prompt_tokens,
            "completion_tokens": spent.completion_tokens,
            "total_tokens": spent.total_tokens,
            "frames": spent.frames,
            "segments": spent.segments,
            "audio_seconds": spent.audio_seconds,
        },
    )


_ADDED = (*FIGURES, "audio_seconds")


@functools.cache
def _upsert(dialect: str) -> Any:
    """The ledger's upsert, built once: it runs for every frame, and building it cost several
    times what PostgreSQL takes to run it (bench/abuse.py)."""
    table = KeySpend.__table__
    assert isinstance(table, Table)
    insert = postgresql.insert if dialect == "postgresql" else sqlite.insert
    statement = insert(table).values(
        {name: bindparam(name) for name in ("api_key_id", "day", *_ADDED)}
    )
    added = {name: table.c[name] + statement.excluded[name] for name in _ADDED}
    return statement.on_conflict_do_update(index_elements=["api_key_id", "day"], set_=added)


@dataclass(frozen=True)
class Standing:
    """What a key's limits weigh, read under its lock."""

    quota: int | None  # tokens per UTC day; None: no quota
    active: int  # its categories jobs pending or running
    used: int  # tokens spent today, plus what its active jobs still hold


def standing(
    session: Session, api_key_id: uuid.UUID, *, besides: uuid.UUID | None = None
) -> Standing:
    """Lock the key's row until this transaction ends, then read its standing: the quota
    and active-job checks of one key run one at a time (SQLite: the write takes the
    database's write lock). `besides`: a job whose own hold is left out.

    Two statements, not one: a statement that waited for the lock still reads with the
    snapshot it took before waiting, so its sums would miss what the lock's last holder
    committed."""
    dialect = session.get_bind().dialect.name
    params = {"key": api_key_id, "day": utcnow().date(), "besides": besides}
    session.execute(_lock(dialect), params)
    quota, active, used = session.execute(_standing(dialect), params).one()
    return Standing(quota, int(active), int(used))


@functools.cache
def _lock(dialect: str) -> Any:
    key = bindparam("key", type_=Uuid())
    if dialect == "postgresql":
        return select(ApiKey.id).where(ApiKey.id == key).with_for_update()
    return update(ApiKey).where(ApiKey.id == key).values(id=ApiKey.id)


@functools.cache
def _standing(dialect: str) -> Any:
    """The standing's one query, built once (it runs for every submission)."""
    key = bindparam("key", type_=Uuid())
    besides = bindparam("besides", type_=Uuid())
    active = (
        select(func.count())
        .select_from(Job)
        .where(Job.api_key_id == key, Job.kind == JobKind.CATEGORIES, Job.status.in_(ACTIVE))
        .scalar_subquery()
    )
    today = (
        select(KeySpend.total_tokens)
        .where(KeySpend.api_key_id == key, KeySpend.day == bindparam("day"))
        .scalar_subquery()
    )
    outstanding = func.greatest if dialect == "postgresql" else func.max
    held = (
        select(func.coalesce(func.sum(outstanding(Job.tokens_reserved - Job.tokens_spent, 0)), 0))
        .where(
            Job.api_key_id == key,
            Job.status.in_(ACTIVE),
            Job.tokens_reserved.is_not(None),
            or_(besides.is_(None), Job.id != besides),
        )
        .scalar_subquery()
    )
    return select(ApiKey.tokens_per_day, active, func.coalesce(today, 0) + held).where(
        ApiKey.id == key
    )


def reserve_plan(
    session: Session, job_id: uuid.UUID, api_key_id: uuid.UUID, estimate: int
) -> int | None:
    """Under the key's lock: the job now reserves its plan's estimate, or all the quota has
    left (beside the day's spend and the other active jobs' holds) if that is less. Returns
    the reservation, the most the job may spend in all (None: the key has no quota now)."""
    now = standing(session, api_key_id, besides=job_id)
    reserved: int | None = None
    if now.quota is not None:
        spent = int(session.scalar(select(Job.tokens_spent).where(Job.id == job_id)) or 0)
        reserved = max(0, min(estimate, spent + now.quota - now.used))
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
