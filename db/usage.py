"""What the keys used (docs/api.md, "Usage"), per UTC day: the spend ledger's figures (tokens,
frames, segments, audio: what the model calls cost, on the day they were made) beside the
jobs created that day, by status, with the media they analysed and what they reused. Read by
GET /v2/usage and /metrics."""

from __future__ import annotations

import uuid
from datetime import date, datetime, timedelta
from typing import Any

from sqlalchemy import ColumnElement, func, select
from sqlalchemy.orm import Session

from db import spend
from db.models import ApiKey, Job
from scenecap.core.enums import utcnow

# From the ledger, and from the jobs (what they reused, and the length of their media).
SPENT = (*spend.FIGURES, "audio_seconds")
JOB_FIGURES = ("reused_frames", "reused_segments", "media_seconds")
FIGURES = (*SPENT, *JOB_FIGURES)


def _job_sums() -> list[ColumnElement[Any]]:
    reused = [
        func.coalesce(func.sum(Job.usage[name].as_float()), 0.0).label(name)
        for name in ("reused_frames", "reused_segments")
    ]
    media = func.coalesce(func.sum(Job.media_info["duration"].as_float()), 0.0)
    return [*reused, media.label("media_seconds")]


def _day(session: Session) -> ColumnElement[Any]:
    if session.get_bind().dialect.name == "postgresql":
        return func.date(func.timezone("UTC", Job.created_at))
    return func.date(Job.created_at)


def by_day(
    session: Session, api_key_id: uuid.UUID, first: date, last: date
) -> dict[str, dict[str, Any]]:
    """Each UTC day from `first` to `last` with spend or jobs: its figures, and `jobs`, the
    jobs created that day by status."""
    day = _day(session).label("day")
    start = datetime(first.year, first.month, first.day, tzinfo=utcnow().tzinfo)
    # The day after `last` ends the range; there is none after date.max.
    end = start + timedelta(days=(min(last, date.max - timedelta(days=1)) - first).days + 1)
    days: dict[str, dict[str, Any]] = {}

    def of(name: str) -> dict[str, Any]:
        return days.setdefault(name, {"jobs": {}, **dict.fromkeys(FIGURES, 0.0)})

    rows = session.execute(
        select(day, Job.status, func.count().label("jobs"), *_job_sums())
        .where(Job.api_key_id == api_key_id, Job.created_at >= start, Job.created_at < end)
        .group_by(day, Job.status)
    ).mappings()
    for row in rows:
        figures = of(str(row["day"]))
        figures["jobs"][row["status"]] = int(row["jobs"])
        for name in JOB_FIGURES:
            figures[name] += float(row[name])
    for ledger in spend.by_day(session, api_key_id, first, last):
        figures = of(ledger.day.isoformat())
        for name in SPENT:
            figures[name] += float(getattr(ledger, name))
    return dict(sorted(days.items()))


def by_key(session: Session) -> list[dict[str, Any]]:
    """Every key's figures over all its days and jobs, by key name (for /metrics)."""
    rows = session.execute(
        select(ApiKey.id, ApiKey.name, func.count(Job.id).label("jobs"), *_job_sums())
        .outerjoin(Job, Job.api_key_id == ApiKey.id)
        .group_by(ApiKey.id, ApiKey.name)
    ).mappings()
    spent = spend.by_key(session)
    keyed: dict[str, dict[str, Any]] = {}
    for row in rows:
        ledger = spent.get(row["id"], {})
        if not row["jobs"] and not ledger:
            continue
        empty = {"key": row["name"], "jobs": 0, **dict.fromkeys(FIGURES, 0.0)}
        figures = keyed.setdefault(row["name"], empty)
        figures["jobs"] += int(row["jobs"])
        for name in JOB_FIGURES:
            figures[name] += float(row[name])
        for name in SPENT:
            figures[name] += float(ledger.get(name) or 0)
    return [keyed[name] for name in sorted(keyed)]
