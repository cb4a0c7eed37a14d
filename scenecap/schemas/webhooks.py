"""The key's default webhook, its secret's rotation, and a job's webhook events."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from scenecap.core.enums import as_utc, as_utc_or_none


class WebhookConfig(BaseModel):
    """The key's default webhook URL (used when a job names none)."""

    url: str | None
    secret_prefix: str


class WebhookConfigUpdate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    url: str | None = Field(max_length=2048)


class SecretRotation(BaseModel):
    webhook_secret: str
    previous_secret_valid_until: datetime


class WebhookAttemptOut(BaseModel):
    attempted_at: datetime
    status_code: int | None
    error: str | None
    duration_ms: int


class WebhookEventOut(BaseModel):
    webhook_id: str
    type: str
    url: str
    status: str
    attempts: int
    created_at: datetime
    next_attempt_at: datetime | None
    delivered_at: datetime | None
    last_error: str | None
    attempt_log: list[WebhookAttemptOut]

    @classmethod
    def of(cls, event: Any, attempts: list[Any]) -> WebhookEventOut:
        return cls(
            webhook_id=event.webhook_id,
            type=event.type,
            url=event.url,
            status=event.status,
            attempts=event.attempts,
            created_at=as_utc(event.created_at),
            next_attempt_at=as_utc_or_none(event.next_attempt_at),
            delivered_at=as_utc_or_none(event.delivered_at),
            last_error=event.last_error,
            attempt_log=[
                WebhookAttemptOut(
                    attempted_at=as_utc(a.attempted_at),
                    status_code=a.status_code,
                    error=a.error,
                    duration_ms=a.duration_ms,
                )
                for a in attempts
            ],
        )


class WebhookEventList(BaseModel):
    data: list[WebhookEventOut]
