"""The wire models of the v2 API: requests, responses and the error body, shared by the API
and the Python client (which imports nothing else of the service).

The API is wire-compatible with Animus AI's media API, the hosted video-understanding
service scenecap replaces: the same paths (`/v2/media/categories`, `/v2/media/completions`),
fields and job states, so an Animus client only changes its base URL."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit, urlunsplit

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    StrictBool,
    StrictFloat,
    StrictInt,
    field_validator,
    model_validator,
)

from scenecap.core.enums import JobStatus
from scenecap.core.media import MAX_FRAMES_PER_SEGMENT, METADATA_TYPES, REQUESTABLE


def _storable(value: str) -> str:
    """Text PostgreSQL can hold: no NUL character, no lone surrogate (not UTF-8 at all)."""
    if "\x00" in value:
        raise ValueError("must not contain a NUL character")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise ValueError("must be text (it holds an unpaired surrogate)") from None
    return value


# Free text that reaches the database (a tag, a question, search words).
Text = Annotated[str, AfterValidator(_storable)]

MetadataType = Literal["categories", "participants", "actions", "scene", "tags", "transcript"]


class CategoriesRequest(BaseModel):
    """POST /v2/media/categories."""

    model_config = ConfigDict(extra="forbid")

    media_url: str = Field(min_length=1, description="http(s) URL or data:<mime>;base64,<...>")
    metadata: list[MetadataType] = Field(
        default_factory=lambda: list(METADATA_TYPES),  # type: ignore[arg-type]
        min_length=1,
        max_length=6,
    )
    use_scenes: StrictBool = False
    # With use_scenes (docs/api.md, "Scenes"): on the detector's own scale (ContentDetector:
    # 0-255, default 27; AdaptiveDetector: its adaptive threshold, default 3), and the
    # shortest scene it may cut, in seconds.
    scene_threshold: StrictFloat | StrictInt | None = Field(None, gt=0, le=255)
    min_scene_seconds: StrictFloat | StrictInt | None = Field(None, ge=0, le=60)
    webhook_url: str | None = Field(None, max_length=2048)
    job_tag: Text | None = Field(None, max_length=200)
    max_frames: StrictInt = Field(60, ge=1, le=60)
    model: str | None = Field(None, min_length=1, max_length=200)
    # Segment mode (docs/api.md, "Long videos"): caption every stretch of this many seconds.
    segment_seconds: StrictFloat | None = Field(None, ge=2, le=600)
    frames_per_segment: StrictInt = Field(4, ge=1, le=MAX_FRAMES_PER_SEGMENT)
    # Cost controls (docs/api.md): the plan shrinks to fit, and the job never spends more.
    max_total_tokens: StrictInt | None = Field(None, ge=1, le=10**10)

    @field_validator("metadata")
    @classmethod
    def _unique_in_canonical_order(cls, value: list[str]) -> list[str]:
        return [name for name in REQUESTABLE if name in value]

    @model_validator(mode="after")
    def _scene_options_need_scenes(self) -> CategoriesRequest:
        given = [
            n for n in ("scene_threshold", "min_scene_seconds") if getattr(self, n) is not None
        ]
        if given and not self.use_scenes:
            raise ValueError(f"{' and '.join(given)} need use_scenes: true")
        return self


class JobAccepted(BaseModel):
    job_id: uuid.UUID
    status: JobStatus
    percent_complete: int
    media_type: Literal["video", "image"]


class JobError(BaseModel):
    code: str
    message: str


class JobOut(BaseModel):
    """A job as GET /v2/media/categories/{job_id} shows it."""

    job_id: uuid.UUID
    status: JobStatus
    percent_complete: int
    stage: str
    created_at: datetime
    started_at: datetime | None
    updated_at: datetime
    completed_at: datetime | None
    media_url: str
    media_name: str | None  # an upload's file name, or the last part of the URL's path
    media_type: Literal["video", "image"]
    metadata: list[str]
    use_scenes: bool
    scene_threshold: float | None
    min_scene_seconds: float | None
    max_frames: int
    segment_seconds: float | None
    frames_per_segment: int | None
    model: str | None
    job_tag: str | None
    webhook_url: str | None
    media: dict[str, Any] | None
    results: dict[str, Any] | None
    usage: dict[str, Any] | None
    error: JobError | None
    # Seconds spent in each stage so far (the last attempt's), shown with a single job.
    timings: dict[str, float] | None = None

    def public(self) -> JobOut:
        """The job as a share link shows it (PublicJobOut's fields; the rest blank)."""
        return self.model_copy(
            update={"webhook_url": None, "usage": None, "media_url": public_url(self.media_url)}
        )


# What a share link never shows: where the job reports, and what it cost.
PRIVATE_FIELDS = frozenset({"webhook_url", "usage"})


class PublicJobOut(BaseModel):
    """A job as a share link's events show it: no webhook URL (for some receivers it is the
    credential), no usage, and the media URL without its query string or credentials."""

    job_id: uuid.UUID
    status: JobStatus
    percent_complete: int
    stage: str
    created_at: datetime
    started_at: datetime | None
    updated_at: datetime
    completed_at: datetime | None
    media_url: str
    media_name: str | None  # an upload's file name, or the last part of the URL's path
    media_type: Literal["video", "image"]
    metadata: list[str]
    use_scenes: bool
    scene_threshold: float | None
    min_scene_seconds: float | None
    max_frames: int
    segment_seconds: float | None
    frames_per_segment: int | None
    model: str | None
    job_tag: str | None
    media: dict[str, Any] | None
    results: dict[str, Any] | None
    error: JobError | None
    timings: dict[str, float] | None = None

    @classmethod
    def of(cls, view: JobOut) -> PublicJobOut:
        return cls.model_validate(view.public().model_dump(exclude=set(PRIVATE_FIELDS)))


def public_url(url: str) -> str:
    """A media URL without what may be a credential: its query, fragment and user info."""
    if not url.startswith(("http://", "https://")):
        return url  # data: (shown abbreviated already) and upload:// carry no secret
    parts = urlsplit(url)
    host = parts.hostname or ""
    netloc = f"[{host}]" if ":" in host else host
    if parts.port is not None:
        netloc += f":{parts.port}"
    return urlunsplit((parts.scheme, netloc, parts.path, "", ""))


class JobList(BaseModel):
    """A page of jobs, newest first; pass next_cursor back as `cursor` for the next page."""

    data: list[JobOut]
    next_cursor: str | None


class ShareRequest(BaseModel):
    """POST /v2/media/categories/{job_id}/share."""

    model_config = ConfigDict(extra="forbid")

    expires_in: StrictInt = Field(
        7 * 24 * 3600, ge=60, le=30 * 24 * 3600, description="seconds the link stays valid"
    )


class ShareLink(BaseModel):
    """A signed link that opens the job's report (and its live events) without the API key."""

    report_url: str
    events_url: str
    expires_at: datetime


class UploadOut(BaseModel):
    """A file received by POST /v2/media/uploads: submit it as `media_url` until it expires."""

    upload_id: uuid.UUID
    media_url: str
    bytes: int
    sha256: str
    content_type: str
    name: str | None = Field(
        None, description="the file's name, from ?filename= or Content-Disposition"
    )
    expires_at: datetime


class ImageResult(BaseModel):
    """An image answered inline by POST /v2/media/categories."""

    media_type: Literal["image"] = "image"
    caption: str
    metadata: dict[str, Any]
    media: dict[str, Any] | None
    usage: dict[str, Any] | None


class ErrorBody(BaseModel):
    code: str
    message: str
    details: dict[str, Any] = Field(default_factory=dict)


class ErrorResponse(BaseModel):
    error: ErrorBody


class Health(BaseModel):
    status: str
    checks: dict[str, str] = Field(default_factory=dict)
