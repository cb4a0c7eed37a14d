"""What the keys' jobs used (docs/api.md, "Usage"): per key and UTC day, by status, summed
from each job's `usage` and media duration. Read by GET /v2/usage, /metrics, and the daily
token quota."""

from __future__ import annotations

import uuid
from datetime import date, datetime, timedelta
from typing import Any

from sqlalchemy import ColumnElement, func, select
from sqlalchemy.orm import Session

from db.models import ApiKey, Job
from scenecap.core.enums import utcnow

# The figures summed from each job's usage, and the media's length.
FIGURES = (
    "frames",
    "segments",
    "prompt_tokens",
    "completion_tokens",
    "total_tokens",
    "audio_seconds",
    "reused_frames",
    "reused_segments",
)


def _sums() -> list[ColumnElement[Any]]:
    used = [
        func.coalesce(func.sum(Job.usage[name].as_float()), 0.0).label(name) for name in FIGURES
    ]
    media = func.coalesce(func.sum(Job.media_info["duration"].as_float()), 0.0)
    return [*used, media.label("media_seconds")]


def _day(session: Session) -> ColumnElement[Any]:
    if session.get_bind().dialect.name == "postgresql":
        return func.date(func.timezone("UTC", Job.created_at))
    return func.date(Job.created_at)


def by_day(
    session: Session, api_key_id: uuid.UUID, first: date, last: date
) -> list[dict[str, Any]]:
    """One row per (UTC day, status) with jobs created that day: its figures and `jobs`."""
    day = _day(session).label("day")
    start = datetime(first.year, first.month, first.day, tzinfo=utcnow().tzinfo)
    end = start + timedelta(days=(last - first).days + 1)
    rows = session.execute(
        select(day, Job.status, func.count().label("jobs"), *_sums())
        .where(Job.api_key_id == api_key_id, Job.created_at >= start, Job.created_at < end)
        .group_by(day, Job.status)
        .order_by(day)
    ).mappings()
    return [{**row, "day": str(row["day"])} for row in rows]


def by_key(session: Session) -> list[dict[str, Any]]:
    """Every key's figures over all its jobs, by key name (for /metrics)."""
    rows = session.execute(
        select(ApiKey.name.label("key"), func.count(Job.id).label("jobs"), *_sums())
        .join(Job, Job.api_key_id == ApiKey.id)
        .group_by(ApiKey.name)
        .order_by(ApiKey.name)
    ).mappings()
    return [dict(row) for row in rows]


def tokens_today(session: Session, api_key_id: uuid.UUID) -> int:
    """Tokens the key's jobs created since midnight UTC have reported."""
    now = utcnow()
    midnight = now.replace(hour=0, minute=0, second=0, microsecond=0)
    spent = session.scalar(
        select(func.coalesce(func.sum(Job.usage["total_tokens"].as_float()), 0.0)).where(
            Job.api_key_id == api_key_id, Job.created_at >= midnight
        )
    )
    return int(spent or 0)
