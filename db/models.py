"""SQLAlchemy 2 typed models: API keys and what they spent, jobs with their frames,
segments, work items, passages and webhook events, uploads."""

from __future__ import annotations

import uuid
from datetime import date, datetime
from typing import Any, ClassVar

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Computed,
    Date,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Text,
    UniqueConstraint,
    Uuid,
)
from sqlalchemy.dialects.postgresql import TSVECTOR
from sqlalchemy.orm import DeclarativeBase, Mapped, deferred, mapped_column, relationship

from scenecap.core.enums import JobKind, JobStage, JobStatus, WebhookStatus, utcnow

# Stable constraint names so Alembic migrations can refer to them.
NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)
    type_annotation_map: ClassVar[dict[Any, Any]] = {dict[str, Any]: JSON, list[str]: JSON}


class ApiKey(Base):
    __tablename__ = "api_keys"

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=uuid.uuid4)
    name: Mapped[str] = mapped_column(String(200))
    # SHA-256 of the key: keys are 256-bit random, so a slow hash adds nothing.
    key_hash: Mapped[str] = mapped_column(String(64), unique=True)
    key_prefix: Mapped[str] = mapped_column(String(16))
    webhook_secret: Mapped[str] = mapped_column(String(100))
    # After a rotation the old secret still signs (a second signature) until it expires.
    previous_webhook_secret: Mapped[str | None] = mapped_column(String(100))
    previous_secret_expires_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    default_webhook_url: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    # To the minute (db.keys.mark_used): enough to tell which keys are still in use.
    last_used_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    revoked_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    # Model tokens the key's jobs may spend per UTC day (None: no quota).
    tokens_per_day: Mapped[int | None] = mapped_column(BigInteger)


class Job(Base):
    __tablename__ = "jobs"
    __table_args__ = (
        UniqueConstraint("api_key_id", "idempotency_key", name="uq_jobs_api_key_idempotency"),
        Index("ix_jobs_owner_created", "api_key_id", "created_at", "id"),
        Index("ix_jobs_status_lease", "status", "lease_expires_at"),
        Index("ix_jobs_media_retention", "media_deleted_at", "completed_at"),
        Index("ix_jobs_owner_reuse", "api_key_id", "reuse_key"),
    )

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=uuid.uuid4)
    api_key_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("api_keys.id", ondelete="CASCADE"))
    kind: Mapped[str] = mapped_column(String(16), default=JobKind.CATEGORIES)
    # A completion's chat request (messages, model, temperature, max_tokens).
    request: Mapped[dict[str, Any] | None] = deferred(mapped_column(JSON))
    status: Mapped[str] = mapped_column(String(16), default=JobStatus.PENDING)
    stage: Mapped[str] = mapped_column(String(32), default=JobStage.QUEUED)
    percent_complete: Mapped[int] = mapped_column(Integer, default=0)

    media_url: Mapped[str] = mapped_column(Text)
    # The bytes of a data: URI submission until a worker moves them to the media store;
    # deferred so listing jobs never loads them.
    media_data: Mapped[bytes | None] = deferred(mapped_column(LargeBinary))
    media_type: Mapped[str] = mapped_column(String(8))
    requested_metadata: Mapped[list[str]] = mapped_column(JSON)
    use_scenes: Mapped[bool] = mapped_column(Boolean, default=False)
    # With use_scenes: the detector's threshold (None: the detector's default; SCENE_THRESHOLD)
    # and the shortest scene it may cut, in seconds (None: MIN_SCENE_SECONDS).
    scene_threshold: Mapped[float | None] = mapped_column(Float)
    # What people call the media: an upload's file name, or the last part of the URL's path.
    media_name: Mapped[str | None] = mapped_column(String(255))
    min_scene_seconds: Mapped[float | None] = mapped_column(Float)
    max_frames: Mapped[int] = mapped_column(Integer, default=60)
    # Segment mode (docs/architecture.md, "Long videos"): set, the job captions every stretch
    # of this many seconds with frames_per_segment frames in one request each.
    segment_seconds: Mapped[float | None] = mapped_column(Float)
    frames_per_segment: Mapped[int] = mapped_column(Integer, default=4)
    # The length used: segment_seconds, or longer so the video fits MAX_SEGMENTS.
    segment_length: Mapped[float | None] = mapped_column(Float)
    # Images per request, when the model's server said it takes fewer than configured.
    image_cap: Mapped[int | None] = mapped_column(Integer)
    # Work items finished, and planned: the transaction that stores the last one queues
    # what comes next (no task waits or polls for the others).
    segments_done: Mapped[int] = mapped_column(Integer, default=0)
    segments_total: Mapped[int] = mapped_column(Integer, default=0)
    chunks_done: Mapped[int] = mapped_column(Integer, default=0)
    chunks_total: Mapped[int] = mapped_column(Integer, default=0)
    model: Mapped[str | None] = mapped_column(String(200))
    webhook_url: Mapped[str | None] = mapped_column(Text)
    job_tag: Mapped[str | None] = mapped_column(String(200))
    idempotency_key: Mapped[str | None] = mapped_column(String(200))
    request_hash: Mapped[str | None] = mapped_column(String(64))
    # Cost controls (docs/api.md, "Cost controls"): the most the job may spend, and what keys
    # its captions for reuse by the same key (the media's SHA-256 with the model, the prompt
    # version and the plan).
    max_total_tokens: Mapped[int | None] = mapped_column(BigInteger)
    # Segment mode's budget across tasks: what the model reported, and what requests in
    # flight may still cost (their estimates), kept on the row that every task locks.
    tokens_spent: Mapped[int] = mapped_column(BigInteger, default=0)
    tokens_held: Mapped[int] = mapped_column(BigInteger, default=0)
    # What the key's daily quota holds for the job while it is active (docs/api.md, "Cost
    # controls"): its plan's estimate, which also caps what it may spend.
    tokens_reserved: Mapped[int | None] = mapped_column(BigInteger)
    media_sha256: Mapped[str | None] = mapped_column(String(64))
    reuse_key: Mapped[str | None] = mapped_column(String(64))

    media_info: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    results: Mapped[dict[str, Any] | None] = deferred(mapped_column(JSON))
    usage: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    error_code: Mapped[str | None] = mapped_column(String(64))
    error_message: Mapped[str | None] = mapped_column(Text)

    attempts: Mapped[int] = mapped_column(Integer, default=0)
    worker_id: Mapped[str | None] = mapped_column(String(200))
    lease_expires_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    heartbeat_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))

    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    started_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    completed_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    # When MEDIA_RETENTION_HOURS removed the job's fetched media from the store.
    media_deleted_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))

    frames: Mapped[list[JobFrame]] = relationship(
        back_populates="job", lazy="raise", order_by="JobFrame.index"
    )


class JobFrame(Base):
    """One captioned frame, stored as soon as it is captioned so a retried job can resume."""

    __tablename__ = "job_frames"

    job_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("jobs.id", ondelete="CASCADE"), primary_key=True
    )
    index: Mapped[int] = mapped_column(Integer, primary_key=True)
    timestamp: Mapped[float] = mapped_column(Float)
    planned_timestamp: Mapped[float] = mapped_column(Float)
    scene_start: Mapped[float | None] = mapped_column(Float)
    scene_end: Mapped[float | None] = mapped_column(Float)
    caption: Mapped[str] = mapped_column(Text)
    frame_metadata: Mapped[dict[str, Any]] = mapped_column(JSON)
    # False when the model's answer could not be read as JSON (the caption is kept).
    parsed: Mapped[bool] = mapped_column(Boolean, default=True)
    # What the backend measured (local-cv), shown beside the caption.
    details: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    prompt_tokens: Mapped[int] = mapped_column(Integer, default=0)
    completion_tokens: Mapped[int] = mapped_column(Integer, default=0)
    # Wall seconds of the vision call that answered, and the failed attempts before it.
    vision_seconds: Mapped[float] = mapped_column(Float, default=0.0)
    vision_retries: Mapped[int] = mapped_column(Integer, default=0)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)

    job: Mapped[Job] = relationship(back_populates="frames", lazy="raise")


class Upload(Base):
    """A file sent to POST /v2/media/uploads; its bytes are in the media store."""

    __tablename__ = "uploads"
    __table_args__ = (Index("ix_uploads_expires_at", "expires_at"),)

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=uuid.uuid4)
    api_key_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("api_keys.id", ondelete="CASCADE"))
    bytes: Mapped[int] = mapped_column(BigInteger)
    sha256: Mapped[str] = mapped_column(String(64))
    content_type: Mapped[str] = mapped_column(String(100))
    name: Mapped[str | None] = mapped_column(String(255))  # the file's name, as sent
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    expires_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class JobSegment(Base):
    """A stretch of a segment-mode job's video; captioned (with several frames) or not yet."""

    __tablename__ = "job_segments"

    job_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("jobs.id", ondelete="CASCADE"), primary_key=True
    )
    index: Mapped[int] = mapped_column(Integer, primary_key=True)
    start: Mapped[float] = mapped_column(Float)
    end: Mapped[float] = mapped_column(Float)
    planned_times: Mapped[list[float]] = mapped_column(JSON)
    # What was captioned: the frames' real presentation times, the model's answer.
    frame_times: Mapped[list[float] | None] = mapped_column(JSON)
    caption: Mapped[str | None] = mapped_column(Text)
    segment_metadata: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    parsed: Mapped[bool] = mapped_column(Boolean, default=True)
    details: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    prompt_tokens: Mapped[int] = mapped_column(Integer, default=0)
    completion_tokens: Mapped[int] = mapped_column(Integer, default=0)
    vision_seconds: Mapped[float] = mapped_column(Float, default=0.0)
    vision_retries: Mapped[int] = mapped_column(Integer, default=0)
    captioned_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


class WorkItem(Base):
    """A part of a segment-mode job any worker may take: a chunk of scene detection, the
    plan, a batch of segments, the summary. Leased and reaped like a job (docs/architecture.md).
    """

    __tablename__ = "job_work_items"
    __table_args__ = (Index("ix_job_work_items_status_lease", "status", "lease_expires_at"),)

    job_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("jobs.id", ondelete="CASCADE"), primary_key=True
    )
    index: Mapped[int] = mapped_column(Integer, primary_key=True)
    kind: Mapped[str] = mapped_column(String(16))
    # A batch's segments (first..last), or a scene chunk's number (first == last).
    first: Mapped[int] = mapped_column(Integer, default=0)
    last: Mapped[int] = mapped_column(Integer, default=0)
    # A scene chunk's span in seconds, from one keyframe to the next chunk's.
    start: Mapped[float | None] = mapped_column(Float)
    end: Mapped[float | None] = mapped_column(Float)
    status: Mapped[str] = mapped_column(String(16), default="PENDING")
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    worker_id: Mapped[str | None] = mapped_column(String(200))
    lease_expires_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    # A scene chunk's frame scores (float64 pairs of time and score), for stitching.
    result: Mapped[bytes | None] = deferred(mapped_column(LargeBinary))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class Passage(Base):
    """A searchable piece of a completed job's results: a caption, a chapter, a stretch of
    transcript, a label (docs/api.md, "Search"). PostgreSQL indexes its text in a generated
    tsvector column (GIN); SQLite in an FTS5 table kept by triggers (migration 0007)."""

    __tablename__ = "passages"
    __table_args__ = (
        Index("ix_passages_job_start", "job_id", "start"),
        # PostgreSQL (btree_gin): a key's words, so a search never reads another key's rows.
        Index("ix_passages_key_tsv", "api_key_id", "tsv", postgresql_using="gin"),
    )

    id: Mapped[int] = mapped_column(
        BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True
    )
    job_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("jobs.id", ondelete="CASCADE"))
    api_key_id: Mapped[uuid.UUID] = mapped_column(Uuid)
    kind: Mapped[str] = mapped_column(String(16))
    start: Mapped[float] = mapped_column(Float)
    end: Mapped[float] = mapped_column(Float)
    text: Mapped[str] = mapped_column(Text)
    # PostgreSQL only (SQLite has passages_fts instead): never loaded, never written.
    tsv: Mapped[Any] = deferred(
        mapped_column(TSVECTOR, Computed("to_tsvector('english', text)", persisted=True))
    )


class KeySpend(Base):
    """The spend ledger: what a key's model calls cost on one UTC day, added in the
    transaction that stores each call's result. Quotas and GET /v2/usage read it; nothing a
    job becomes (failed, cancelled, purged) takes anything from it."""

    __tablename__ = "key_spend"

    api_key_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("api_keys.id", ondelete="CASCADE"), primary_key=True
    )
    day: Mapped[date] = mapped_column(Date, primary_key=True)
    prompt_tokens: Mapped[int] = mapped_column(BigInteger, default=0)
    completion_tokens: Mapped[int] = mapped_column(BigInteger, default=0)
    total_tokens: Mapped[int] = mapped_column(BigInteger, default=0)
    frames: Mapped[int] = mapped_column(BigInteger, default=0)
    segments: Mapped[int] = mapped_column(BigInteger, default=0)
    audio_seconds: Mapped[float] = mapped_column(Float, default=0.0)


class PurgedJob(Base):
    """A purged job's tombstone: whatever a late worker still writes under it is deleted
    (by the worker, or by beat once the job's lease has surely lapsed)."""

    __tablename__ = "purged_jobs"

    job_id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True)
    purged_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class JobStageTiming(Base):
    """How long a job's last attempt spent in each stage (for the report, --json and /metrics)."""

    __tablename__ = "job_stage_timings"

    job_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("jobs.id", ondelete="CASCADE"), primary_key=True
    )
    stage: Mapped[str] = mapped_column(String(32), primary_key=True)
    seconds: Mapped[float] = mapped_column(Float)


class WebhookEvent(Base):
    """The transactional outbox: one row per terminal job event, written with the state change."""

    __tablename__ = "webhook_events"
    __table_args__ = (Index("ix_webhook_events_due", "status", "next_attempt_at"),)

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=uuid.uuid4)
    job_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("jobs.id", ondelete="CASCADE"), index=True)
    api_key_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("api_keys.id", ondelete="CASCADE"))
    type: Mapped[str] = mapped_column(String(32))
    url: Mapped[str] = mapped_column(Text)
    # The exact bytes that are signed and sent, the same on every attempt.
    body: Mapped[str] = mapped_column(Text)
    status: Mapped[str] = mapped_column(String(16), default=WebhookStatus.PENDING)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    # A delivery in progress holds the event until then; a crashed one is retried after.
    locked_until: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    last_error: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    delivered_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))

    @property
    def webhook_id(self) -> str:
        return f"msg_{self.id.hex}"


class WebhookAttempt(Base):
    __tablename__ = "webhook_attempts"

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=uuid.uuid4)
    event_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("webhook_events.id", ondelete="CASCADE"), index=True
    )
    attempted_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    status_code: Mapped[int | None] = mapped_column(Integer)
    error: Mapped[str | None] = mapped_column(Text)
    duration_ms: Mapped[int] = mapped_column(Integer)
