"""The job vocabulary every layer shares: statuses, stages, kinds, webhook states, UTC time."""

from __future__ import annotations

import enum
from datetime import UTC, datetime


class JobStatus(enum.StrEnum):
    PENDING = "PENDING"
    PROCESSING = "PROCESSING"
    COMPLETED = "COMPLETED"
    FAILED = "FAILED"
    CANCELLED = "CANCELLED"

    @property
    def is_terminal(self) -> bool:
        return self in (JobStatus.COMPLETED, JobStatus.FAILED, JobStatus.CANCELLED)


class JobStage(enum.StrEnum):
    QUEUED = "queued"
    DOWNLOADING = "downloading"
    DETECTING_SCENES = "detecting_scenes"
    TRANSCRIBING = "transcribing"
    EXTRACTING_FRAMES = "extracting_frames"
    CAPTIONING = "captioning"
    SUMMARIZING = "summarizing"
    DONE = "done"


class JobKind(enum.StrEnum):
    CATEGORIES = "categories"  # POST /v2/media/categories
    COMPLETION = "completion"  # POST /v2/media/completions, answered when it finishes


class WebhookStatus(enum.StrEnum):
    PENDING = "pending"
    DELIVERED = "delivered"
    FAILED = "failed"


def utcnow() -> datetime:
    return datetime.now(UTC)


def as_utc(value: datetime) -> datetime:
    """SQLite hands datetimes back naive; they were written in UTC."""
    return value if value.tzinfo is not None else value.replace(tzinfo=UTC)


def as_utc_or_none(value: datetime | None) -> datetime | None:
    return as_utc(value) if value is not None else None
