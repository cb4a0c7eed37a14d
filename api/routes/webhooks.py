"""Webhooks: the key's default URL and signing secret, and each job's deliveries."""

from __future__ import annotations

from fastapi import APIRouter

from api.deps import CallerDep, InspectorDep, SessionDep, SettingsDep
from api.errors import responses
from api.services import webhooks as service
from db.models import ApiKey
from scenecap.core import errors
from scenecap.schemas.webhooks import (
    SecretRotation,
    WebhookConfig,
    WebhookConfigUpdate,
    WebhookEventList,
    WebhookEventOut,
)

router = APIRouter(tags=["webhooks"])


def _config(key: ApiKey) -> WebhookConfig:
    return WebhookConfig(url=key.default_webhook_url, secret_prefix=key.webhook_secret[:10] + "...")


@router.get(
    "/v2/webhook",
    response_model=WebhookConfig,
    responses=responses(errors.Unauthenticated),
    summary="Your default webhook URL",
)
def get_webhook(session: SessionDep, key: CallerDep) -> WebhookConfig:
    return _config(service.key_row(session, key))


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
    body: WebhookConfigUpdate, session: SessionDep, key: CallerDep, inspector: InspectorDep
) -> WebhookConfig:
    return _config(service.set_default_url(session, key, body.url, inspector))


@router.post(
    "/v2/webhook/rotate-secret",
    response_model=SecretRotation,
    responses=responses(errors.Unauthenticated),
    summary="New signing secret; the old one keeps signing (a second signature) for a grace period",
)
def rotate_secret(session: SessionDep, key: CallerDep, settings: SettingsDep) -> SecretRotation:
    secret, until = service.rotate_secret(session, key, settings.webhook_secret_grace_seconds)
    return SecretRotation(webhook_secret=secret, previous_secret_valid_until=until)


@router.get(
    "/v2/media/categories/{job_id}/webhooks",
    response_model=WebhookEventList,
    responses=responses(errors.Unauthenticated, errors.JobNotFound),
    summary="The job's webhook deliveries and every attempt",
)
def list_deliveries(job_id: str, session: SessionDep, key: CallerDep) -> WebhookEventList:
    events = service.job_events(session, key, job_id)
    return WebhookEventList(data=[WebhookEventOut.of(e, attempts) for e, attempts in events])


@router.post(
    "/v2/media/categories/{job_id}/webhooks/redeliver",
    status_code=202,
    response_model=WebhookEventList,
    responses=responses(errors.Unauthenticated, errors.JobNotFound, errors.NoWebhookEvent),
    summary="Send the job's webhook again (same webhook-id)",
)
def redeliver(job_id: str, session: SessionDep, key: CallerDep) -> WebhookEventList:
    service.redeliver(session, key, job_id)  # each delivery is queued when the request commits
    events = service.job_events(session, key, job_id)
    return WebhookEventList(data=[WebhookEventOut.of(e, attempts) for e, attempts in events])
