"""Webhooks: the key's default URL and signing secret, and each job's deliveries."""

from __future__ import annotations

from fastapi import APIRouter

from api.deps import ApiKeyDep, InspectorDep, QueueDep, SessionDep, SettingsDep
from api.errors import responses
from api.schemas import (
    SecretRotation,
    WebhookConfig,
    WebhookConfigUpdate,
    WebhookEventList,
    WebhookEventOut,
)
from api.services import webhooks as service
from db.models import ApiKey
from scenecap import errors

router = APIRouter(tags=["webhooks"])


def _config(key: ApiKey) -> WebhookConfig:
    return WebhookConfig(url=key.default_webhook_url, secret_prefix=key.webhook_secret[:10] + "...")


@router.get(
    "/v2/webhook",
    response_model=WebhookConfig,
    responses=responses(errors.Unauthenticated),
    summary="Your default webhook URL",
)
def get_webhook(key: ApiKeyDep) -> WebhookConfig:
    return _config(key)


@router.put(
    "/v2/webhook",
    response_model=WebhookConfig,
    responses=responses(
        errors.Unauthenticated,
        errors.ValidationFailed,
        errors.UrlNotAllowed,
        errors.UnsupportedUrlScheme,
    ),
    summary="Set (or clear, with null) the webhook URL used when a job names none",
)
def put_webhook(
    body: WebhookConfigUpdate, key: ApiKeyDep, inspector: InspectorDep
) -> WebhookConfig:
    service.set_default_url(key, body.url, inspector)
    return _config(key)


@router.post(
    "/v2/webhook/rotate-secret",
    response_model=SecretRotation,
    responses=responses(errors.Unauthenticated),
    summary="New signing secret; the old one keeps signing (a second signature) for a grace period",
)
def rotate_secret(key: ApiKeyDep, settings: SettingsDep) -> SecretRotation:
    secret, until = service.rotate_secret(key, settings.webhook_secret_grace_seconds)
    return SecretRotation(webhook_secret=secret, previous_secret_valid_until=until)


@router.get(
    "/v2/media/categories/{job_id}/webhooks",
    response_model=WebhookEventList,
    responses=responses(errors.Unauthenticated, errors.JobNotFound),
    summary="The job's webhook deliveries and every attempt",
)
def list_deliveries(job_id: str, session: SessionDep, key: ApiKeyDep) -> WebhookEventList:
    events = service.job_events(session, key, job_id)
    return WebhookEventList(data=[WebhookEventOut.of(e, attempts) for e, attempts in events])


@router.post(
    "/v2/media/categories/{job_id}/webhooks/redeliver",
    status_code=202,
    response_model=WebhookEventList,
    responses=responses(errors.Unauthenticated, errors.JobNotFound, service.NoWebhookEvent),
    summary="Send the job's webhook again (same webhook-id)",
)
def redeliver(
    job_id: str, session: SessionDep, key: ApiKeyDep, queue: QueueDep
) -> WebhookEventList:
    event_ids = service.redeliver(session, key, job_id)
    session.commit()
    for event_id in event_ids:
        queue.enqueue_webhook(event_id)
    events = service.job_events(session, key, job_id)
    return WebhookEventList(data=[WebhookEventOut.of(e, attempts) for e, attempts in events])
