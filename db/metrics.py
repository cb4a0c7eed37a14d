"""Aggregates for /metrics, read from the database so every process reports the same truth."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy import case, func, select
from sqlalchemy.orm import Session

from db import usage
from db.models import Job, JobFrame, JobStageTiming, WebhookAttempt, WebhookEvent

# Histogram upper bounds, in seconds.
STAGE_BUCKETS = (0.1, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0)
VISION_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)


@dataclass(frozen=True)
class Histogram:
    """Cumulative bucket counts (one per bound, then +Inf) and the sum of observations."""

    buckets: list[tuple[float, int]]
    count: int
    total: float


@dataclass(frozen=True)
class Totals:
    jobs_by_kind_status: dict[tuple[str, str], int]
    frames_captioned: int
    prompt_tokens: int
    completion_tokens: int
    unparsed_frames: int
    webhook_events_by_status: dict[str, int]
    webhook_attempts_by_outcome: dict[str, int]
    stage_seconds: dict[str, Histogram]
    vision_seconds: Histogram
    vision_retries: int
    jobs_failed_by_code: dict[str, int]
    usage_by_key: list[dict[str, Any]]  # db.usage.by_key


def totals(session: Session) -> Totals:
    jobs = session.execute(
        select(Job.kind, Job.status, func.count()).group_by(Job.kind, Job.status)
    )
    frames = session.execute(
        select(
            func.count(),
            func.coalesce(func.sum(JobFrame.prompt_tokens), 0),
            func.coalesce(func.sum(JobFrame.completion_tokens), 0),
            func.coalesce(func.sum(case((JobFrame.parsed.is_(False), 1), else_=0)), 0),
        )
    ).one()
    events = session.execute(
        select(WebhookEvent.status, func.count()).group_by(WebhookEvent.status)
    )
    outcome = case(
        (WebhookAttempt.status_code.is_(None), "error"),
        (WebhookAttempt.status_code < 300, "2xx"),
        (WebhookAttempt.status_code < 400, "3xx"),
        (WebhookAttempt.status_code < 500, "4xx"),
        else_="5xx",
    )
    attempts = session.execute(select(outcome, func.count()).group_by(outcome))
    failures = session.execute(
        select(Job.error_code, func.count())
        .where(Job.error_code.is_not(None))
        .group_by(Job.error_code)
    )
    stage_rows = session.execute(
        select(
            JobStageTiming.stage, *_histogram_columns(JobStageTiming.seconds, STAGE_BUCKETS)
        ).group_by(JobStageTiming.stage)
    )
    vision = session.execute(
        select(*_histogram_columns(JobFrame.vision_seconds, VISION_BUCKETS))
    ).one()
    retries = session.scalar(select(func.coalesce(func.sum(JobFrame.vision_retries), 0)))
    return Totals(
        jobs_by_kind_status={(kind, status): n for kind, status, n in jobs},
        frames_captioned=frames[0],
        prompt_tokens=frames[1],
        completion_tokens=frames[2],
        unparsed_frames=frames[3],
        webhook_events_by_status={status: n for status, n in events},
        webhook_attempts_by_outcome={name: n for name, n in attempts},
        stage_seconds={row[0]: _histogram(row[1:], STAGE_BUCKETS) for row in stage_rows},
        vision_seconds=_histogram(vision, VISION_BUCKETS),
        vision_retries=int(retries or 0),
        jobs_failed_by_code={str(code): n for code, n in failures},
        usage_by_key=usage.by_key(session),
    )


def _histogram_columns(column: Any, bounds: tuple[float, ...]) -> list[Any]:
    # One pass: a running count under each bound, the total count and the sum.
    under = [func.coalesce(func.sum(case((column <= bound, 1), else_=0)), 0) for bound in bounds]
    return [*under, func.count(), func.coalesce(func.sum(column), 0.0)]


def _histogram(row: Any, bounds: tuple[float, ...]) -> Histogram:
    values = list(row)
    count, total = int(values[-2]), float(values[-1])
    buckets = [(bound, int(n)) for bound, n in zip(bounds, values[:-2], strict=True)]
    return Histogram([*buckets, (float("inf"), count)], count, total)
