"""Job service: submit, read, list and cancel jobs on behalf of an API key."""

from __future__ import annotations

import base64
import binascii
import contextlib
import hashlib
import json
import math
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from api.auth import Caller
from api.schemas import CategoriesRequest
from api.services.media_check import InspectedMedia, MediaInspector
from api.services.uploads import owned_upload
from api.views import job_body, page_body
from db import frames as frame_repo
from db import jobs, keys, usage, views
from db.models import Job
from db.reads import Reads
from db.session import enqueue, release_connection
from scenecap.core.enums import JobStatus, utcnow
from scenecap.core.errors import (
    IdempotencyConflict,
    JobAlreadyFinished,
    JobNotFinished,
    JobNotFound,
    QuotaExceeded,
    TooManyActiveJobs,
    TranscriptionUnavailable,
    ValidationFailed,
)
from scenecap.core.media import TRANSCRIPT, MediaKind, is_upload_url
from scenecap.core.settings import Settings
from scenecap.core.tasks import PROCESS_JOB
from scenecap.core.tokens import least_budget
from scenecap.store import MediaStore, paths


@dataclass(frozen=True)
class Submission:
    """The job a submission made (or found again: an Idempotency-Key replay)."""

    job_id: uuid.UUID
    status: JobStatus
    percent_complete: int
    media_type: MediaKind
    created: bool  # False when an Idempotency-Key replay returned an existing job

    @classmethod
    def replayed(cls, job: Job) -> Submission:
        kind: MediaKind = "image" if job.media_type == "image" else "video"
        return cls(job.id, JobStatus(job.status), job.percent_complete, kind, created=False)


def request_fingerprint(body: CategoriesRequest) -> str:
    canonical = json.dumps(body.model_dump(mode="json"), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()


def submit_job(
    session: Session,
    key: Caller,
    body: CategoriesRequest,
    *,
    idempotency_key: str | None,
    inspector: MediaInspector,
    store: MediaStore,
    settings: Settings,
    fingerprint: str | None = None,
) -> Submission:
    """Check the media and store a new PENDING job (or return the idempotent original).

    Whatever it raises, it raised before writing anything: a batch goes on to its next item.
    `fingerprint` stands for the body in Idempotency-Key checks (a batch's item: the batch's
    and its place in it)."""
    if TRANSCRIPT in body.metadata and settings.asr_backend == "none":
        raise TranscriptionUnavailable(
            "this service has no speech backend (SCENECAP_ASR_BACKEND=none): "
            "ask without 'transcript'"
        )
    if body.max_total_tokens is not None:
        _check_budget(body, settings)
    fingerprint = fingerprint or request_fingerprint(body)
    if idempotency_key is not None:
        existing = jobs.find_by_idempotency_key(session, key.id, idempotency_key)
        if existing is not None:
            return Submission.replayed(_same_request(existing, fingerprint))
    max_active = settings.max_active_jobs_per_key
    if max_active and jobs.count_active_for_key(session, key.id) >= max_active:
        raise TooManyActiveJobs(
            f"this key already has {max_active} jobs pending or running; wait for some to end",
            {"limit": max_active, "retry_after": 10},
        )
    check_quota(session, key)
    upload = owned_upload(session, key, body.media_url) if is_upload_url(body.media_url) else None
    # Under load, one connection idling through each submission's media check emptied the pool.
    release_connection(session)
    media = InspectedMedia.of_upload(upload) if upload else inspector.inspect(body.media_url)
    if body.webhook_url is not None:
        inspector.check_webhook_url(body.webhook_url)
    job_id = uuid.uuid4()
    fields = {
        "id": job_id,
        "api_key_id": key.id,
        "media_url": media.display_url,
        "media_data": media.data,
        "media_type": media.kind,
        "requested_metadata": list(body.metadata),
        "use_scenes": body.use_scenes,
        "max_frames": body.max_frames,
        # A still image has no stretches of time: segment mode is for videos.
        "segment_seconds": body.segment_seconds if media.kind == "video" else None,
        "frames_per_segment": body.frames_per_segment,
        "model": body.model,
        "max_total_tokens": body.max_total_tokens,
        "media_sha256": upload.sha256 if upload else None,  # hashed as it arrived
        # The key's default is read by the INSERT itself (one round trip less).
        "webhook_url": body.webhook_url or keys.default_webhook_url_of(key.id),
        "job_tag": body.job_tag,
        "idempotency_key": idempotency_key,
        "request_hash": fingerprint,
        "media_info": {"mime": media.mime},
    }
    if upload is not None:  # the job's own copy: the upload may expire before the job ends
        store.copy(paths.upload(upload.id), paths.media(job_id))
    try:
        # A savepoint only with a key: a concurrent request with it may win the INSERT.
        with session.begin_nested() if idempotency_key else contextlib.nullcontext():
            jobs.insert_job(session, **fields)
    except IntegrityError:
        existing = jobs.find_by_idempotency_key(session, key.id, idempotency_key or "")
        if existing is None:
            raise
        store.delete_prefix(paths.job(job_id))
        return Submission.replayed(_same_request(existing, fingerprint))
    enqueue(session, PROCESS_JOB, str(job_id))
    return Submission(job_id, JobStatus.PENDING, 0, media.kind, created=True)


def _check_budget(body: CategoriesRequest, settings: Settings) -> None:
    """The least any plan costs: one frame and the summary. (A segment and its summary cost
    more; a job whose budget does not hold one ends FAILED with BUDGET_TOO_SMALL.)"""
    least = least_budget(settings, heard=TRANSCRIPT in body.metadata)
    if body.max_total_tokens is not None and body.max_total_tokens < least:
        raise ValidationFailed(
            f"max_total_tokens: one frame and the summary need at least {least} tokens",
            {"field": "max_total_tokens", "least": least},
        )


def check_quota(session: Session, key: Caller) -> None:
    """429 QUOTA_EXCEEDED once the key's jobs created today (UTC) have reported its daily
    tokens; the reset time is in the details and Retry-After."""
    if key.tokens_per_day is None:
        return
    used = usage.tokens_today(session, key.id)
    if used < key.tokens_per_day:
        return
    now = utcnow()
    resets = (now + timedelta(days=1)).replace(hour=0, minute=0, second=0, microsecond=0)
    raise QuotaExceeded(
        f"this key has used {used:,} of its {key.tokens_per_day:,} tokens for today (UTC); "
        f"new jobs are accepted again at {resets.isoformat()}",
        {
            "limit": key.tokens_per_day,
            "used": used,
            "resets_at": resets.isoformat(),
            "retry_after": math.ceil((resets - now).total_seconds()),
        },
    )


def _same_request(job: Job, fingerprint: str) -> Job:
    if job.request_hash != fingerprint:
        raise IdempotencyConflict(
            "this Idempotency-Key was used with a different request body",
            {"job_id": str(job.id)},
        )
    return job


def purge_job(session: Session, store: MediaStore, key: Caller, raw_id: str) -> None:
    """Delete a finished job of the key: its row, frames, timings, webhook log, and every
    object stored for it (409 while it runs: cancel it first)."""
    job = get_job(session, key, raw_id)
    if not JobStatus(job.status).is_terminal:
        raise JobNotFinished(
            f"the job is {job.status}; cancel it before purging it", {"job_id": str(job.id)}
        )
    # The store first: if it fails, the row (and so a later purge) is still there.
    store.delete_prefix(paths.job(job.id))
    jobs.purge_job(session, job.id)


def parse_job_id(raw: str) -> uuid.UUID:
    """A malformed id names no job: 404, like any other unknown id."""
    try:
        return uuid.UUID(raw)
    except ValueError:
        raise JobNotFound(f"no job {raw!r}") from None


def get_job(session: Session, key: Caller, raw_id: str) -> Job:
    job = jobs.get_owned_job(session, parse_job_id(raw_id), key.id)
    if job is None:
        raise JobNotFound(f"no job {raw_id!r}")
    return job


def stage_timings(session: Session, job_id: uuid.UUID) -> dict[str, float]:
    return frame_repo.stage_timings(session, job_id)


async def job_json(reads: Reads, key: Caller, raw_id: str) -> bytes:
    """The key's job as GET shows it, as JSON (one statement, outside any transaction)."""
    row = await views.job_row(reads, parse_job_id(raw_id), key.id)
    if row is None:
        raise JobNotFound(f"no job {raw_id!r}")
    return job_body(row)


async def list_json(
    reads: Reads,
    key: Caller,
    *,
    limit: int,
    cursor: str | None,
    status: JobStatus | None,
) -> bytes:
    """A page of the key's jobs, newest first (without results), and the next page's cursor."""
    before = decode_cursor(cursor) if cursor else None
    rows = await views.job_rows(reads, key.id, limit=limit + 1, before=before, status=status)
    more = len(rows) > limit
    rows = rows[:limit]
    last = rows[-1] if more else None
    return page_body(rows, encode_cursor(last["created_at"], last["id"]) if last else None)


def encode_cursor(created_at: datetime, job_id: uuid.UUID) -> str:
    raw = f"{created_at.isoformat()}|{job_id}"
    return base64.urlsafe_b64encode(raw.encode()).decode().rstrip("=")


def decode_cursor(cursor: str) -> tuple[datetime, uuid.UUID]:
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
        created, job_id = raw.split("|")
        return datetime.fromisoformat(created), uuid.UUID(job_id)
    except (binascii.Error, UnicodeDecodeError, ValueError):
        raise ValidationFailed(
            "cursor: not a cursor this API returned", {"field": "cursor"}
        ) from None


def cancel_job(session: Session, key: Caller, raw_id: str) -> Job:
    """Cancel the key's job; a running worker stops at its next checkpoint."""
    job = get_job(session, key, raw_id)
    if not jobs.cancel_job(session, job.id):
        raise JobAlreadyFinished(
            f"the job is already {job.status}", {"status": job.status, "job_id": str(job.id)}
        )
    session.refresh(job)
    return job
