"""Job service: submit, read, list and cancel jobs on behalf of an API key."""

from __future__ import annotations

import base64
import binascii
import contextlib
import hashlib
import json
import uuid
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session
from starlette.concurrency import run_in_threadpool

from api.auth import Caller
from api.services import quota
from api.services.media_check import InspectedMedia, MediaInspector
from api.services.uploads import owned_upload
from api.views import job_body, page_body
from db import frames as frame_repo
from db import jobs, views
from db.models import Job, Upload
from db.reads import Reads
from db.session import commit_now, enqueue, release_connection
from scenecap.core.enums import JobKind, JobStatus
from scenecap.core.errors import (
    IdempotencyConflict,
    JobAlreadyFinished,
    JobNotFinished,
    JobNotFound,
    ModelNotAllowed,
    ValidationFailed,
)
from scenecap.core.media import TRANSCRIPT, MediaKind, is_data_uri, is_upload_url, media_name
from scenecap.core.settings import Settings
from scenecap.core.speech import check_speech
from scenecap.core.tasks import PROCESS_JOB
from scenecap.core.tokens import frame_cost, least_budget
from scenecap.schemas import CategoriesRequest
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


@dataclass(frozen=True)
class Prepared:
    """A submission checked as far as it can be without looking at its media."""

    body: CategoriesRequest
    fingerprint: str
    idempotency_key: str | None
    upload: Upload | None


def prepare_job(
    session: Session,
    key: Caller,
    body: CategoriesRequest,
    *,
    idempotency_key: str | None,
    settings: Settings,
    fingerprint: str | None = None,
) -> Prepared | Submission:
    """Check what can be checked from the request and the database alone; an Idempotency-Key
    replay is answered here (a Submission). Nothing is written.

    `fingerprint` stands for the body in Idempotency-Key checks (a batch's item: the batch's
    and its place in it)."""
    if TRANSCRIPT in body.metadata:
        check_speech(settings)
    check_model(settings, body.model)
    if body.max_total_tokens is not None:
        _check_budget(body, settings)
    fingerprint = fingerprint or request_fingerprint(body)
    if idempotency_key is not None:
        existing = jobs.find_by_idempotency_key(session, key.id, idempotency_key)
        if existing is not None:
            return Submission.replayed(_same_request(existing, fingerprint))
    upload = owned_upload(session, key, body.media_url) if is_upload_url(body.media_url) else None
    return Prepared(body, fingerprint, idempotency_key, upload)


async def submit_job(
    session: Session,
    key: Caller,
    body: CategoriesRequest,
    *,
    idempotency_key: str | None,
    inspector: MediaInspector,
    store: MediaStore,
    settings: Settings,
) -> Submission:
    """Check, look at the media, admit and store one submission.

    Media that needs the network (a URL to peek at, a webhook URL to check) is looked at on
    the event loop with no connection held; a data: URI or an upload is looked at on the
    request's thread, in one hop and one transaction (two hops and a transaction fewer)."""

    def stored(prepared: Prepared, media: InspectedMedia) -> Submission:
        # Committed on this thread at once: the key's lock (its limits' checks) is held for
        # the statements that need it, not until the request's session ends a thread hop
        # later (submissions of one key queue on that lock).
        submission = store_job(session, key, prepared, media, store=store, settings=settings)
        commit_now(session)
        return submission

    def here() -> Submission:
        prepared = prepare_job(
            session, key, body, idempotency_key=idempotency_key, settings=settings
        )
        if isinstance(prepared, Submission):
            return prepared
        if prepared.upload is not None:
            media = InspectedMedia.of_upload(prepared.upload)
        else:
            media = inspector.inspect_data(body.media_url)
        return stored(prepared, media)

    if body.webhook_url is None and (is_data_uri(body.media_url) or is_upload_url(body.media_url)):
        return await run_in_threadpool(here)
    prepared = await run_in_threadpool(
        prepare_job, session, key, body, idempotency_key=idempotency_key, settings=settings
    )
    if isinstance(prepared, Submission):
        return prepared
    # No connection is held while the media is looked at (under load, one idling through
    # each check emptied the pool).
    await run_in_threadpool(release_connection, session)
    media = await inspect_job(prepared, inspector)
    return await run_in_threadpool(stored, prepared, media)


async def inspect_job(prepared: Prepared, inspector: MediaInspector) -> InspectedMedia:
    """Look at the submitted media (a coroutine: no thread waits on a slow server)."""
    if prepared.body.webhook_url is not None:
        inspector.check_webhook_url(prepared.body.webhook_url)
    if prepared.upload is not None:
        return InspectedMedia.of_upload(prepared.upload)
    return await inspector.inspect(prepared.body.media_url)


def store_job(
    session: Session,
    key: Caller,
    prepared: Prepared,
    media: InspectedMedia,
    *,
    store: MediaStore,
    settings: Settings,
) -> Submission:
    """Admit the job under the key's limits (its lock, if it has any, held until the
    transaction commits) and store it PENDING; it is queued when the transaction commits."""
    body, upload = prepared.body, prepared.upload
    heard = TRANSCRIPT in body.metadata
    # The least it costs: its worker reserves its plan's estimate once the media is probed.
    least = (
        frame_cost(settings, heard=heard)
        if media.kind == "image"
        else least_budget(settings, heard=heard)
    )
    reserved = quota.admit(session, key, settings, kind=JobKind.CATEGORIES, estimate=least)
    job_id = uuid.uuid4()
    fields = {
        "id": job_id,
        "api_key_id": key.id,
        "media_url": media.display_url,
        "media_name": media_name(body.media_url, upload.name if upload else None),
        "media_data": media.data,
        "media_type": media.kind,
        "requested_metadata": list(body.metadata),
        "use_scenes": body.use_scenes,
        "scene_threshold": body.scene_threshold,
        "min_scene_seconds": body.min_scene_seconds,
        "max_frames": body.max_frames,
        # A still image has no stretches of time: segment mode is for videos.
        "segment_seconds": body.segment_seconds if media.kind == "video" else None,
        "frames_per_segment": body.frames_per_segment,
        "model": body.model,
        "max_total_tokens": body.max_total_tokens,
        "tokens_reserved": reserved,
        "media_sha256": upload.sha256 if upload else None,  # hashed as it arrived
        "webhook_url": body.webhook_url,  # None: the key's default
        "job_tag": body.job_tag,
        "idempotency_key": prepared.idempotency_key,
        "request_hash": prepared.fingerprint,
        "media_info": {"mime": media.mime},
    }
    if upload is not None:  # the job's own copy: the upload may expire before the job ends
        store.copy(paths.upload(upload.id), paths.media(job_id))
    try:
        # A savepoint only with a key: a concurrent request with it may win the INSERT.
        with session.begin_nested() if prepared.idempotency_key else contextlib.nullcontext():
            jobs.insert_job(session, **fields)
    except IntegrityError:
        existing = jobs.find_by_idempotency_key(session, key.id, prepared.idempotency_key or "")
        if existing is None:
            raise
        store.delete_prefix(paths.job(job_id))
        return Submission.replayed(_same_request(existing, prepared.fingerprint))
    enqueue(session, PROCESS_JOB, str(job_id))
    return Submission(job_id, JobStatus.PENDING, 0, media.kind, created=True)


def check_model(settings: Settings, model: str | None) -> None:
    """422 MODEL_NOT_ALLOWED unless the model is VLM_MODEL or one of VLM_MODELS."""
    if model is not None and model not in settings.allowed_models:
        raise ModelNotAllowed(
            f"model {model!r} is not offered here; leave it out, or name one of the allowed",
            {"field": "model", "allowed": sorted(settings.allowed_models)},
        )


def _check_budget(body: CategoriesRequest, settings: Settings) -> None:
    """The least any plan costs: one frame and the summary. (A segment and its summary cost
    more; a job whose budget does not hold one ends FAILED with BUDGET_TOO_SMALL.)"""
    least = least_budget(settings, heard=TRANSCRIPT in body.metadata)
    if body.max_total_tokens is not None and body.max_total_tokens < least:
        raise ValidationFailed(
            f"max_total_tokens: one frame and the summary need at least {least} tokens",
            {"field": "max_total_tokens", "least": least},
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
    job_tag: str | None = None,
) -> bytes:
    """A page of the key's jobs, newest first (without results), and the next page's cursor."""
    before = decode_cursor(cursor) if cursor else None
    rows = await views.job_rows(
        reads, key.id, limit=limit + 1, before=before, status=status, job_tag=job_tag
    )
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
