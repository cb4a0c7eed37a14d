"""Chat completions over images and videos: checked here, answered by a worker.

The API never runs the vision pipeline itself: a completion is stored as a job of kind
`completion`, queued, and answered when the worker finishes it (or 504 after
COMPLETION_WAIT_SECONDS, when the job is cancelled).
"""

from __future__ import annotations

import asyncio
import uuid

from fastapi.responses import JSONResponse
from sqlalchemy.orm import Session, sessionmaker
from starlette.concurrency import run_in_threadpool
from starlette.responses import Response

from api.auth import Caller
from api.errors import error_response
from api.services import quota
from api.services.jobs import check_model
from api.services.media_check import InspectedMedia, MediaInspector
from api.services.uploads import owned_upload
from api.services.waiting import wait_for_terminal
from db import jobs
from db.models import Upload
from db.session import enqueue, release_connection
from scenecap.core.enums import JobKind, JobStatus
from scenecap.core.errors import CompletionTimeout, ValidationFailed, error_for_code
from scenecap.core.media import METADATA_TYPES, is_upload_url
from scenecap.core.settings import Settings
from scenecap.core.tasks import PROCESS_JOB
from scenecap.schemas.completions import CompletionRequest


async def create_completion(
    session: Session,
    key: Caller,
    body: CompletionRequest,
    inspector: MediaInspector,
    settings: Settings,
) -> uuid.UUID:
    """Check every image part (fetchable, allowed, an image or a video) and the model; hold
    what the answer may cost against the key's quota; store and queue it."""
    urls = body.image_urls()
    if not urls:
        raise ValidationFailed(
            "messages: at least one image_url part is needed", {"field": "messages"}
        )
    check_model(settings, body.model)
    uploads = await run_in_threadpool(
        lambda: {url: owned_upload(session, key, url) for url in urls if is_upload_url(url)}
    )
    await run_in_threadpool(release_connection, session)
    inspected = await asyncio.gather(
        *(_as_inspected(uploads[url]) if url in uploads else inspector.inspect(url) for url in urls)
    )
    # The most it can cost: its request fills at most the context, its answer included.
    estimate = settings.vlm_context_tokens

    def store() -> uuid.UUID:
        reserved = quota.admit(session, key, settings, kind=JobKind.COMPLETION, estimate=estimate)
        job = jobs.create_job(
            session,
            api_key_id=key.id,
            kind=JobKind.COMPLETION,
            request=body.model_dump(mode="json", exclude_none=True),
            media_url=inspected[0].display_url,
            media_type="video" if any(m.kind == "video" for m in inspected) else "image",
            requested_metadata=list(METADATA_TYPES),
            model=body.model,
            tokens_reserved=reserved,
        )
        enqueue(session, PROCESS_JOB, str(job.id))
        return job.id

    return await run_in_threadpool(store)


async def _as_inspected(upload: Upload) -> InspectedMedia:
    return InspectedMedia.of_upload(upload)


async def answer_when_done(
    reader: sessionmaker[Session],
    session_factory: sessionmaker[Session],
    key: Caller,
    job_id: uuid.UUID,
    *,
    timeout: float,
) -> Response:
    """The worker's answer; the job's error; or 504 after timeout, the job then cancelled."""
    finished = await wait_for_terminal(reader, key.id, job_id, timeout, JobKind.COMPLETION)
    if finished is None:
        await run_in_threadpool(_cancel, session_factory, job_id)
        return error_response(
            CompletionTimeout(
                f"no answer within {timeout:.0f} s; the request was cancelled",
                {"job_id": str(job_id)},
            )
        )
    if finished.status != JobStatus.COMPLETED or not finished.results:
        code = finished.error_code or "INTERNAL_ERROR"
        return error_response(error_for_code(code, finished.error_message or ""))
    return JSONResponse(finished.results["completion"])


def _cancel(session_factory: sessionmaker[Session], job_id: uuid.UUID) -> None:
    # Its own transaction: the request's has committed long ago.
    with session_factory.begin() as session:
        jobs.cancel_job(session, job_id)
