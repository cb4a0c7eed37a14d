"""Deliver one webhook event: sign it, POST it through the SSRF-safe client, log the attempt,
and schedule the next one (exponential schedule with jitter, Retry-After honoured)."""

from __future__ import annotations

import logging
import random
import time
import uuid
from dataclasses import dataclass
from datetime import timedelta

from sqlalchemy.orm import Session, sessionmaker

from db import webhooks
from db.models import ApiKey, WebhookEvent
from db.session import enqueue
from scenecap.core.enums import WebhookStatus, as_utc, utcnow
from scenecap.core.errors import ScenecapError
from scenecap.core.logs import job_context
from scenecap.core.safehttp import SafeHttpClient, UrlPolicy
from scenecap.core.settings import Settings
from scenecap.core.signing import signature_header
from scenecap.core.tasks import DELIVER_WEBHOOK

log = logging.getLogger(__name__)
_MAX_RETRY_AFTER = 24 * 3600.0


def retry_schedule(settings: Settings) -> list[float]:
    """Seconds to wait before each attempt (the first is normally 0)."""
    return [float(part) for part in settings.webhook_retry_schedule.split(",")]


@dataclass(frozen=True)
class _Claimed:
    """An event claimed for one attempt, detached from its session."""

    url: str
    body: str
    webhook_id: str
    attempts: int
    job_id: uuid.UUID
    secrets: list[str]


@dataclass(frozen=True)
class _Reply:
    status_code: int | None
    error: str | None
    retry_after: float | None  # what a 429 or 503 asked for
    duration_ms: int


def deliver_event(
    event_id: uuid.UUID, session_factory: sessionmaker[Session], settings: Settings
) -> WebhookStatus | None:
    """Make one delivery attempt if the event is due; return its outcome (None if not due)."""
    claimed = _claim(event_id, session_factory, settings)
    if claimed is None:
        return None
    reply = _post(claimed, settings)
    outcome, error, delay = _judged(reply, claimed.attempts, settings)
    with session_factory.begin() as session:
        event = session.get(WebhookEvent, event_id)
        assert event is not None
        webhooks.record_attempt(
            session,
            event,
            status_code=reply.status_code,
            error=error,
            duration_ms=reply.duration_ms,
            outcome=outcome,
            next_attempt_at=utcnow() + timedelta(seconds=delay) if delay is not None else None,
        )
        if delay is not None:
            enqueue(session, DELIVER_WEBHOOK, str(event_id), countdown=delay)
    with job_context(claimed.job_id):
        log.info(
            "webhook %s attempt %d: %s (%s)",
            claimed.webhook_id,
            claimed.attempts + 1,
            outcome,
            reply.status_code or error,
        )
    return outcome


def _claim(
    event_id: uuid.UUID, session_factory: sessionmaker[Session], settings: Settings
) -> _Claimed | None:
    """The event, if due and unclaimed, with the secrets it is signed with (the key's, and
    its previous one while a rotation's overlap lasts)."""
    # Held while one attempt runs (its deadline covers the whole exchange); a worker killed
    # mid-attempt frees the event when the lock lapses, and the sweep delivers it again.
    lock = settings.webhook_timeout_seconds * 2 + 5
    with session_factory.begin() as session:
        event = webhooks.claim_event(session, event_id, lock)
        if event is None:
            return None
        key = session.get(ApiKey, event.api_key_id)
        assert key is not None
        secrets = [key.webhook_secret]
        rotated = key.previous_secret_expires_at
        if key.previous_webhook_secret and rotated and as_utc(rotated) > utcnow():
            secrets.append(key.previous_webhook_secret)
        return _Claimed(
            event.url, event.body, event.webhook_id, event.attempts, event.job_id, secrets
        )


def _post(claimed: _Claimed, settings: Settings) -> _Reply:
    """One signed POST to the receiver, through the SSRF policy, following no redirect."""
    timestamp = int(time.time())
    headers = {
        "content-type": "application/json",
        "user-agent": "scenecap-webhooks/1",
        "webhook-id": claimed.webhook_id,
        "webhook-timestamp": str(timestamp),
        "webhook-signature": signature_header(
            claimed.secrets, claimed.webhook_id, timestamp, claimed.body
        ),
    }
    status_code: int | None = None
    error: str | None = None
    retry_after: float | None = None
    started = time.monotonic()
    policy = UrlPolicy(allow_private=settings.allow_private_urls)
    try:
        # Checked again at every attempt: the name may resolve elsewhere now.
        with SafeHttpClient(policy, max_redirects=0) as client:
            reply = client.post(
                claimed.url,
                content=claimed.body.encode(),
                headers=headers,
                timeout=settings.webhook_timeout_seconds,
            )
        status_code = reply.status_code
        if status_code in (429, 503):
            retry_after = _retry_after(reply.headers.get("retry-after"))
    except ScenecapError as exc:
        error = f"{exc.code}: {exc.message}"
    duration_ms = round((time.monotonic() - started) * 1000)
    return _Reply(status_code, error, retry_after, duration_ms)


def _judged(
    reply: _Reply, attempts: int, settings: Settings
) -> tuple[WebhookStatus, str | None, float | None]:
    """The attempt's outcome, its error, and the delay before the next attempt (None: no
    more attempts)."""
    status_code, error = reply.status_code, reply.error
    schedule = retry_schedule(settings)
    delay: float | None = None
    if status_code is not None and 200 <= status_code < 300:
        outcome = WebhookStatus.DELIVERED
    elif status_code == 410:
        outcome, error = WebhookStatus.FAILED, "the receiver answered 410 Gone: no more attempts"
    elif attempts + 1 >= len(schedule):
        outcome = WebhookStatus.FAILED
    else:
        outcome = WebhookStatus.PENDING
        planned = schedule[attempts + 1]
        delay = (
            reply.retry_after
            if reply.retry_after is not None
            else planned * random.uniform(0.9, 1.1)
        )
    if status_code is not None and 300 <= status_code < 400:
        error = f"HTTP {status_code}: redirects are not followed"
    return outcome, error, delay


def _retry_after(value: str | None) -> float | None:
    try:
        return min(_MAX_RETRY_AFTER, max(0.0, float(value))) if value else None
    except ValueError:
        return None


def sweep_due_events(session_factory: sessionmaker[Session]) -> int:
    """Queue every due event no delivery holds (after a crash between commit and enqueue)."""
    with session_factory.begin() as session:
        due = webhooks.due_event_ids(session)
        for event_id in due:
            enqueue(session, DELIVER_WEBHOOK, str(event_id))
    return len(due)
