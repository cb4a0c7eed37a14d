"""Chat completions over images and videos: checked here, answered by a worker.

The API never runs the vision pipeline itself: a completion is stored as a job of kind
`completion`, queued, and answered when the worker finishes it (or 504 after
COMPLETION_WAIT_SECONDS, when the job is cancelled).
"""

from __future__ import annotations

import uuid

from fastapi.responses import JSONResponse
from sqlalchemy.orm import Session, sessionmaker
from starlette.concurrency import run_in_threadpool
from starlette.responses import Response

from api.auth import Caller
from api.errors import error_response
from api.schemas import CompletionRequest
from api.services.media_check import InspectedMedia, MediaInspector
from api.services.uploads import owned_upload
from api.services.waiting import wait_for_terminal
from db import jobs
from db.models import Job
from db.session import enqueue
from scenecap.core.enums import JobKind, JobStatus
from scenecap.core.errors import CompletionTimeout, ValidationFailed, error_for_code
from scenecap.core.media import METADATA_TYPES, is_upload_url
from scenecap.core.tasks import PROCESS_JOB


def create_completion(
    session: Session, key: Caller, body: CompletionRequest, inspector: MediaInspector
) -> Job:
    """Check every image part (fetchable, allowed, an image or a video); store and queue it."""
    urls = body.image_urls()
    if not urls:
        raise ValidationFailed(
            "messages: at least one image_url part is needed", {"field": "messages"}
        )
    inspected = [
        InspectedMedia.of_upload(owned_upload(session, key, url))
        if is_upload_url(url)
        else inspector.inspect(url)
        for url in urls
    ]
    job = jobs.create_job(
        session,
        api_key_id=key.id,
        kind=JobKind.COMPLETION,
        request=body.model_dump(mode="json", exclude_none=True),
        media_url=inspected[0].display_url,
        media_type="video" if any(m.kind == "video" for m in inspected) else "image",
        requested_metadata=list(METADATA_TYPES),
        model=body.model,
    )
    enqueue(session, PROCESS_JOB, str(job.id))
    return job


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
