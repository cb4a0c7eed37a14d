"""Aggregates for /metrics, read from the database so every process reports the same truth."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import case, func, select
from sqlalchemy.orm import Session

from db.models import Job, JobFrame, WebhookAttempt, WebhookEvent


@dataclass(frozen=True)
class Totals:
    jobs_by_kind_status: dict[tuple[str, str], int]
    frames_captioned: int
    prompt_tokens: int
    completion_tokens: int
    unparsed_frames: int
    webhook_events_by_status: dict[str, int]
    webhook_attempts_by_outcome: dict[str, int]


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
    return Totals(
        jobs_by_kind_status={(kind, status): n for kind, status, n in jobs},
        frames_captioned=frames[0],
        prompt_tokens=frames[1],
        completion_tokens=frames[2],
        unparsed_frames=frames[3],
        webhook_events_by_status={status: n for status, n in events},
        webhook_attempts_by_outcome={name: n for name, n in attempts},
    )
