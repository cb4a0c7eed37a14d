"""What a task knows of its job and work item, detached from the session that read them."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from db.models import Job, WorkItem
from db.work import ItemKind
from scenecap.core.enums import JobKind
from scenecap.core.media import TRANSCRIPT
from scenecap.core.settings import Settings
from worker.pipeline.probe import MediaInfo
from worker.pipeline.scenes import DetectorOptions
from worker.vision.base import CaptionRequest


@dataclass(frozen=True)
class SceneOptions:
    """A job's own scene settings; None: the service's (SCENE_THRESHOLD, MIN_SCENE_SECONDS)."""

    threshold: float | None
    min_seconds: float | None

    def detector(self, settings: Settings) -> DetectorOptions:
        return DetectorOptions(
            settings.scene_detector,
            self.threshold if self.threshold is not None else settings.scene_threshold,
            self.min_seconds if self.min_seconds is not None else settings.min_scene_seconds,
        )


@dataclass(frozen=True)
class JobSpec:
    """The request fields of a claimed job, detached from its session."""

    id: uuid.UUID
    kind: JobKind
    media_url: str
    media_data: bytes | None
    metadata_types: tuple[str, ...]  # what the vision model labels
    wants_transcript: bool
    use_scenes: bool
    scenes: SceneOptions
    max_frames: int
    model: str | None
    request: dict[str, Any] | None
    segment_seconds: float | None  # set: segment mode
    frames_per_segment: int
    image_cap: int | None  # images per request, if the model's server said it takes fewer
    api_key_id: uuid.UUID
    max_total_tokens: int | None  # the most the job may spend (docs/api.md, "Cost controls")
    media_sha256: str | None  # known from its upload, or from an earlier attempt
    tokens_reserved: int | None  # what the key's daily quota holds for it (None: no quota)

    @classmethod
    def of(cls, job: Job) -> JobSpec:
        return cls(
            job.id,
            JobKind(job.kind),
            job.media_url,
            job.media_data,
            tuple(t for t in job.requested_metadata if t != TRANSCRIPT),
            TRANSCRIPT in job.requested_metadata,
            job.use_scenes,
            SceneOptions(job.scene_threshold, job.min_scene_seconds),
            job.max_frames,
            job.model,
            job.request,
            job.segment_seconds,
            job.frames_per_segment,
            job.image_cap,
            job.api_key_id,
            job.max_total_tokens,
            job.media_sha256,
            job.tokens_reserved,
        )

    @property
    def under_quota(self) -> bool:
        return self.tokens_reserved is not None

    @property
    def token_cap(self) -> int | None:
        """The most the job may spend: max_total_tokens, or its quota reservation if less."""
        caps = [c for c in (self.max_total_tokens, self.tokens_reserved) if c is not None]
        return min(caps) if caps else None

    @property
    def caption_request(self) -> CaptionRequest:
        return CaptionRequest(self.metadata_types, self.model)


@dataclass(frozen=True)
class Media:
    """A job's media as a local file, and what it is."""

    path: Path
    info: MediaInfo
    is_image: bool
    mime: str


@dataclass(frozen=True)
class ItemSpec:
    """A claimed work item, detached from its session."""

    index: int
    kind: ItemKind
    first: int
    last: int
    start: float | None
    end: float | None
    attempts: int

    @classmethod
    def of(cls, item: WorkItem) -> ItemSpec:
        return cls(
            item.index,
            ItemKind(item.kind),
            item.first,
            item.last,
            item.start,
            item.end,
            item.attempts,
        )
