"""Webhook service: the key's default URL and secret, a job's deliveries, redelivery."""

from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy.orm import Session

from api.services.jobs import get_job
from api.services.media_check import MediaInspector
from db import webhooks
from db.keys import rotate_webhook_secret
from db.models import ApiKey, WebhookAttempt, WebhookEvent
from scenecap.errors import Conflict


class NoWebhookEvent(Conflict):
    code = "NO_WEBHOOK_EVENT"


def set_default_url(key: ApiKey, url: str | None, inspector: MediaInspector) -> None:
    if url is not None:
        inspector.check_webhook_url(url)
    key.default_webhook_url = url


def rotate_secret(key: ApiKey, grace_seconds: float) -> tuple[str, datetime]:
    secret = rotate_webhook_secret(key, grace_seconds)
    assert key.previous_secret_expires_at is not None
    return secret, key.previous_secret_expires_at


def job_events(
    session: Session, key: ApiKey, raw_job_id: str
) -> list[tuple[WebhookEvent, list[WebhookAttempt]]]:
    """The deliveries of the key's job (404 for anyone else's)."""
    return webhooks.events_for_job(session, get_job(session, key, raw_job_id).id)


def redeliver(session: Session, key: ApiKey, raw_job_id: str) -> list[uuid.UUID]:
    """Send the job's events again, with their original webhook-id; returns their ids."""
    events = job_events(session, key, raw_job_id)
    if not events:
        raise NoWebhookEvent(
            "the job has no webhook events (it named no webhook URL, or it is running)"
        )
    for event, _attempts in events:
        webhooks.redeliver(session, event)
    return [event.id for event, _attempts in events]
