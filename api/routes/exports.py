"""GET /v2/media/categories/{job_id}/export: a completed job's results as timed cues, in
JSON, CSV, SubRip or WebVTT (docs/api.md, "Exports")."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query
from fastapi.responses import Response

from api.deps import CallerDep, SessionDep
from api.errors import responses
from api.services import jobs as service
from scenecap.core import errors
from scenecap.core.enums import JobStatus
from scenecap.core.exports import KINDS, MEDIA_TYPES, Format, Kind, cues_of, render

router = APIRouter(prefix="/v2/media/categories", tags=["jobs"])


@router.get(
    "/{job_id}/export",
    response_class=Response,
    responses=responses(
        errors.Unauthenticated, errors.JobNotFound, errors.JobNotFinished, errors.ValidationFailed
    ),
    summary="The job's captions, chapters, speech and on-screen text as timed cues",
)
def export_job(
    job_id: str,
    session: SessionDep,
    key: CallerDep,
    format: Annotated[Format, Query(description="json, csv, srt or vtt")] = "json",
    kinds: Annotated[
        list[Kind] | None,
        Query(alias="kind", description="only these: caption, chapter, speech, text (repeat)"),
    ] = None,
) -> Response:
    job = service.get_job(session, key, job_id)
    if job.status != JobStatus.COMPLETED:
        raise errors.JobNotFinished(
            f"job {job.id} is {job.status}: only a completed job has results to export",
            {"status": str(job.status)},
        )
    duration = float((job.media_info or {}).get("duration") or 0.0)
    cues = cues_of(job.results or {}, duration, tuple(kinds) if kinds else KINDS)
    body = render(cues, format, {"job_id": job.id, "media_url": job.media_url})
    return Response(
        body,
        media_type=MEDIA_TYPES[format],
        headers={"Content-Disposition": f'attachment; filename="scenecap-{job.id}.{format}"'},
    )
