"""Webhook outbox repository: events written with the terminal state change, their delivery
claims, and the log of every attempt."""

from __future__ import annotations

import json
import uuid
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import or_, select, update
from sqlalchemy.orm import Session, undefer

from db.models import Job, WebhookAttempt, WebhookEvent
from db.session import enqueue, rowcount
from scenecap.core.enums import JobStatus, WebhookStatus, utcnow
from scenecap.core.tasks import DELIVER_WEBHOOK

EVENT_TYPES = {
    JobStatus.COMPLETED: "media.completed",
    JobStatus.FAILED: "media.failed",
    JobStatus.CANCELLED: "media.cancelled",
}


def add_terminal_event(session: Session, job_id: uuid.UUID) -> None:
    """Write the job's terminal event to the outbox, in the caller's transaction, and queue
    its delivery for when that transaction commits."""
    # populate_existing: the caller may hold this job from before the terminal UPDATE.
    job = session.scalar(
        select(Job)
        .options(undefer(Job.results))
        .where(Job.id == job_id)
        .execution_options(populate_existing=True)
    )
    if job is None or not job.webhook_url:
        return
    status = JobStatus(job.status)
    when = job.completed_at or utcnow()
    body = {
        "type": EVENT_TYPES[status],
        "timestamp": when.isoformat().replace("+00:00", "Z"),
        "data": {
            "job_id": str(job.id),
            "status": status.value,
            "media_url": job.media_url,
            "job_tag": job.job_tag,
            "percent_complete": job.percent_complete,
            "results": job.results if status == JobStatus.COMPLETED else None,
            "error": {"code": job.error_code, "message": job.error_message}
            if job.error_code
            else None,
        },
    }
    event = WebhookEvent(
        job_id=job.id,
        api_key_id=job.api_key_id,
        type=body["type"],
        url=job.webhook_url,
        body=json.dumps(body, separators=(",", ":")),
        next_attempt_at=utcnow(),
    )
    session.add(event)
    session.flush()
    enqueue(session, DELIVER_WEBHOOK, str(event.id))


def claim_event(session: Session, event_id: uuid.UUID, lock_seconds: float) -> WebhookEvent | None:
    """Take a due, unlocked, pending event for one delivery attempt."""
    now = utcnow()
    result = session.execute(
        update(WebhookEvent)
        .where(
            WebhookEvent.id == event_id,
            WebhookEvent.status == WebhookStatus.PENDING,
            or_(WebhookEvent.next_attempt_at.is_(None), WebhookEvent.next_attempt_at <= now),
            or_(WebhookEvent.locked_until.is_(None), WebhookEvent.locked_until < now),
        )
        .values(locked_until=now + timedelta(seconds=lock_seconds))
    )
    if rowcount(result) != 1:
        return None
    return session.get(WebhookEvent, event_id, populate_existing=True)


def record_attempt(
    session: Session,
    event: WebhookEvent,
    *,
    status_code: int | None,
    error: str | None,
    duration_ms: int,
    outcome: WebhookStatus,
    next_attempt_at: datetime | None = None,
) -> None:
    """Log one attempt and move the event on: delivered, failed, or pending until next time."""
    session.add(
        WebhookAttempt(
            event_id=event.id, status_code=status_code, error=error, duration_ms=duration_ms
        )
    )
    event.attempts += 1
    event.status = outcome
    event.locked_until = None
    event.next_attempt_at = next_attempt_at if outcome == WebhookStatus.PENDING else None
    event.last_error = error or (f"HTTP {status_code}" if outcome != "delivered" else None)
    if outcome == WebhookStatus.DELIVERED:
        event.delivered_at = utcnow()


def due_event_ids(session: Session, limit: int = 500) -> list[uuid.UUID]:
    """Pending events that are due and that no delivery holds (for the sweep)."""
    now = utcnow()
    return list(
        session.scalars(
            select(WebhookEvent.id)
            .where(
                WebhookEvent.status == WebhookStatus.PENDING,
                or_(WebhookEvent.next_attempt_at.is_(None), WebhookEvent.next_attempt_at <= now),
                or_(WebhookEvent.locked_until.is_(None), WebhookEvent.locked_until < now),
            )
            .order_by(WebhookEvent.created_at)
            .limit(limit)
        )
    )


def events_for_job(session: Session, job_id: uuid.UUID) -> list[tuple[WebhookEvent, list[Any]]]:
    """The job's events, oldest first, each with its attempts."""
    events = list(
        session.scalars(
            select(WebhookEvent)
            .where(WebhookEvent.job_id == job_id)
            .order_by(WebhookEvent.created_at)
        )
    )
    return [
        (
            event,
            list(
                session.scalars(
                    select(WebhookAttempt)
                    .where(WebhookAttempt.event_id == event.id)
                    .order_by(WebhookAttempt.attempted_at)
                )
            ),
        )
        for event in events
    ]


def redeliver(session: Session, event: WebhookEvent) -> None:
    """Send an event again, with the same webhook-id, starting now."""
    event.status = WebhookStatus.PENDING
    event.next_attempt_at = utcnow()
    event.locked_until = None
    enqueue(session, DELIVER_WEBHOOK, str(event.id))
