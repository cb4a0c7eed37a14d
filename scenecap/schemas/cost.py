"""Cost controls: GET /v2/usage and POST /v2/media/categories/batch (docs/api.md)."""

from __future__ import annotations

import uuid
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from scenecap.schemas import ErrorBody


class UsageFigures(BaseModel):
    """What jobs used: counts by status, and sums of their usage."""

    jobs: dict[str, int] = Field(description="jobs created in the period, by status")
    frames: int
    segments: int
    prompt_tokens: int
    completion_tokens: int
    total_tokens: int
    audio_seconds: float
    media_seconds: float = Field(description="the length of the media the jobs analysed")
    reused_frames: int
    reused_segments: int


class UsageDay(UsageFigures):
    date: str


class UsageReport(UsageFigures):
    """GET /v2/usage: the caller's jobs created from `from` to `to` (UTC days, inclusive)."""

    model_config = ConfigDict(populate_by_name=True)

    first: str = Field(alias="from", serialization_alias="from")
    last: str = Field(alias="to", serialization_alias="to")
    days: list[UsageDay]


MAX_BATCH = 100


class BatchRequest(BaseModel):
    """POST /v2/media/categories/batch: up to 100 request bodies, each checked on its own."""

    model_config = ConfigDict(extra="forbid")

    requests: list[dict[str, Any]] = Field(min_length=1, max_length=MAX_BATCH)


class BatchItem(BaseModel):
    """One request's outcome: 202 and its job (200: an Idempotency-Key replay), or its error."""

    index: int
    status: int
    job_id: uuid.UUID | None = None
    error: ErrorBody | None = None


class BatchResponse(BaseModel):
    results: list[BatchItem]
