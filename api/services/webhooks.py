"""Webhook service: the key's default URL and secret, a job's deliveries, redelivery."""

from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy.orm import Session

from api.auth import Caller
from api.services.jobs import get_job
from api.services.media_check import MediaInspector
from db import webhooks
from db.keys import get_active_key, rotate_webhook_secret
from db.models import ApiKey, WebhookAttempt, WebhookEvent
from scenecap.core.errors import NoWebhookEvent, Unauthenticated


def key_row(session: Session, caller: Caller) -> ApiKey:
    """The caller's key as a row of this session (to read or change its webhook settings)."""
    key = get_active_key(session, caller.id)
    if key is None:  # revoked since the request was authenticated
        raise Unauthenticated("unknown or revoked API key")
    return key


def set_default_url(
    session: Session, caller: Caller, url: str | None, inspector: MediaInspector
) -> ApiKey:
    if url is not None:
        inspector.check_webhook_url(url)
    key = key_row(session, caller)
    key.default_webhook_url = url
    return key


def rotate_secret(session: Session, caller: Caller, grace_seconds: float) -> tuple[str, datetime]:
    key = key_row(session, caller)
    secret = rotate_webhook_secret(key, grace_seconds)
    assert key.previous_secret_expires_at is not None
    return secret, key.previous_secret_expires_at


def job_events(
    session: Session, key: Caller, raw_job_id: str
) -> list[tuple[WebhookEvent, list[WebhookAttempt]]]:
    """The deliveries of the key's job (404 for anyone else's)."""
    return webhooks.events_for_job(session, get_job(session, key, raw_job_id).id)


def redeliver(session: Session, key: Caller, raw_job_id: str) -> list[uuid.UUID]:
    """Send the job's events again, with their original webhook-id; returns their ids."""
    events = job_events(session, key, raw_job_id)
    if not events:
        raise NoWebhookEvent(
            "the job has no webhook events (it named no webhook URL, or it is running)"
        )
    for event, _attempts in events:
        webhooks.redeliver(session, event)
    return [event.id for event, _attempts in events]
