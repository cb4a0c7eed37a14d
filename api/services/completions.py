"""Chat completions over images and videos: checked here, answered by a worker.

The API never runs the vision pipeline itself: a completion is stored as a job of kind
`completion`, queued, and answered when the worker finishes it (or 504 after
COMPLETION_WAIT_SECONDS, when the job is cancelled).
"""

from __future__ import annotations

from typing import Any

from sqlalchemy.orm import Session, sessionmaker

from api.schemas import CompletionRequest
from api.services.jobs import wait_for_terminal
from api.services.media_check import MediaInspector
from db import jobs
from db.models import ApiKey, Job, JobKind, JobStatus
from scenecap.errors import CompletionTimeout, ValidationFailed, error_for_code
from scenecap.media import METADATA_TYPES


def create_completion(
    session: Session, key: ApiKey, body: CompletionRequest, inspector: MediaInspector
) -> Job:
    """Check every image part (fetchable, allowed, an image or a video) and store the job."""
    urls = body.image_urls()
    if not urls:
        raise ValidationFailed(
            "messages: at least one image_url part is needed", {"field": "messages"}
        )
    inspected = [inspector.inspect(url) for url in urls]
    return jobs.create_job(
        session,
        api_key_id=key.id,
        kind=JobKind.COMPLETION,
        request=body.model_dump(mode="json", exclude_none=True),
        media_url=inspected[0].display_url,
        media_type="video" if any(m.kind == "video" for m in inspected) else "image",
        requested_metadata=list(METADATA_TYPES),
        model=body.model,
    )


def await_completion(
    session_factory: sessionmaker[Session],
    session: Session,
    key: ApiKey,
    job: Job,
    *,
    timeout: float,
) -> dict[str, Any]:
    """Wait for the worker's answer; raise the job's error, or 504 (and cancel) on timeout."""
    finished = wait_for_terminal(session_factory, key, job.id, timeout, JobKind.COMPLETION)
    if finished is None:
        jobs.cancel_job(session, job.id)
        raise CompletionTimeout(
            f"no answer within {timeout:.0f} s; the request was cancelled", {"job_id": str(job.id)}
        )
    if finished.status != JobStatus.COMPLETED or not finished.results:
        raise error_for_code(finished.error_code or "INTERNAL_ERROR", finished.error_message or "")
    completion: dict[str, Any] = finished.results["completion"]
    return completion
