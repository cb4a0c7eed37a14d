"""/v2/media/categories: submit, poll, list and cancel media jobs."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Header, Query, Request, Response
from fastapi.responses import JSONResponse
from sqlalchemy.orm import Session, sessionmaker

from api.deps import CallerDep, InspectorDep, SessionDep, SettingsDep, StoreDep
from api.errors import responses
from api.responses import DeferredResponse
from api.services import batch
from api.services import jobs as service
from api.services.waiting import wait_for_terminal
from api.views import job_out
from db.models import Job
from scenecap.core import errors
from scenecap.core.enums import JobStatus
from scenecap.schemas import CategoriesRequest, ImageResult, JobAccepted, JobList, JobOut
from scenecap.schemas.cost import BatchRequest, BatchResponse

router = APIRouter(prefix="/v2/media/categories", tags=["media jobs"])
# The routes whose bodies may carry data: media (up to MAX_REQUEST_BYTES).
MEDIA_PATHS = ("/v2/media/categories", "/v2/media/categories/batch")

_AUTH = (errors.Unauthenticated,)
_SUBMIT_ERRORS = (
    *_AUTH,
    errors.UploadNotFound,
    errors.StoreUnavailable,
    errors.MalformedJson,
    errors.ValidationFailed,
    errors.UnsupportedUrlScheme,
    errors.UrlNotAllowed,
    errors.MediaUnreachable,
    errors.IdempotencyConflict,
    errors.RequestTooLarge,
    errors.MediaTooLarge,
    errors.UnsupportedMedia,
    errors.RateLimited,
    errors.TooManyActiveJobs,
    errors.QuotaExceeded,
    errors.ModelNotAllowed,
    errors.TranscriptionUnavailable,
    errors.BrokerUnavailable,
    errors.DatabaseUnavailable,
)


@router.post(
    "",
    status_code=202,
    response_model=JobAccepted,
    responses={200: {"model": ImageResult | JobAccepted}, **responses(*_SUBMIT_ERRORS)},
    summary="Submit a video (or image) for analysis",
)
async def submit(
    body: CategoriesRequest,
    request: Request,
    session: SessionDep,
    key: CallerDep,
    settings: SettingsDep,
    inspector: InspectorDep,
    store: StoreDep,
    idempotency_key: Annotated[str | None, Header(max_length=200)] = None,
) -> Response:
    submission = await service.submit_job(
        session,
        key,
        body,
        idempotency_key=idempotency_key,
        inspector=inspector,
        store=store,
        settings=settings,
    )
    job_id = submission.job_id
    accepted = JobAccepted(
        job_id=job_id,
        status=submission.status,
        percent_complete=submission.percent_complete,
        media_type=submission.media_type,
    )
    queued = JSONResponse(
        accepted.model_dump(mode="json"),
        status_code=202 if submission.created else 200,
        headers={"Location": f"/v2/media/categories/{job_id}"},
    )
    if submission.media_type != "image":
        return queued

    async def inline_image() -> Response:
        reader: sessionmaker[Session] = request.app.state.reader
        wait = settings.image_inline_wait_seconds
        finished = await wait_for_terminal(reader, key.id, job_id, wait)
        if finished is None or finished.status != JobStatus.COMPLETED:
            return queued
        return JSONResponse(_image_result(finished).model_dump(mode="json"))

    return DeferredResponse(inline_image)


@router.post(
    "/batch",
    response_model=BatchResponse,
    responses=responses(
        *_AUTH,
        errors.MalformedJson,
        errors.ValidationFailed,
        errors.IdempotencyConflict,
        errors.RequestTooLarge,
        errors.DatabaseUnavailable,
    ),
    summary="Submit up to 100 videos at once; each item succeeds or fails on its own",
)
async def submit_batch(
    body: BatchRequest,
    request: Request,
    session: SessionDep,
    key: CallerDep,
    settings: SettingsDep,
    inspector: InspectorDep,
    store: StoreDep,
    idempotency_key: Annotated[str | None, Header(max_length=190)] = None,
) -> BatchResponse:
    # The rate limit counts every item: the request itself was the first.
    refused: dict[int, errors.ScenecapError] = {}
    limiter = request.app.state.rate_limiter
    for index in range(1, len(body.requests) if limiter is not None else 0):
        try:
            await limiter.hit(key.id)
        except errors.RateLimited as exc:
            refused[index] = exc
    return await batch.submit_batch(
        session,
        key,
        body,
        idempotency_key=idempotency_key,
        refused=refused,
        inspector=inspector,
        store=store,
        settings=settings,
    )


def _image_result(job: Job) -> ImageResult:
    frame = (job.results or {}).get("frames", [{}])[0]
    metadata = {name: frame.get(name) for name in job.requested_metadata}
    return ImageResult(
        caption=frame.get("caption", ""), metadata=metadata, media=job.media_info, usage=job.usage
    )


@router.get(
    "",
    response_model=JobList,
    responses=responses(*_AUTH, errors.ValidationFailed),
    summary="List your jobs, newest first",
)
async def list_jobs(
    request: Request,
    key: CallerDep,
    limit: Annotated[int, Query(ge=1, le=100)] = 20,
    cursor: Annotated[str | None, Query(max_length=200)] = None,
    status: JobStatus | None = None,
    job_tag: Annotated[
        str | None, Query(max_length=200, description="only jobs with this tag")
    ] = None,
) -> Response:
    page = await service.list_json(
        request.app.state.reads, key, limit=limit, cursor=cursor, status=status, job_tag=job_tag
    )
    return Response(page, media_type="application/json")


@router.get(
    "/{job_id}",
    response_model=JobOut,
    responses=responses(*_AUTH, errors.JobNotFound),
    summary="Get a job's status, progress and results",
)
async def get_job(job_id: str, request: Request, key: CallerDep) -> Response:
    body = await service.job_json(request.app.state.reads, key, job_id)
    return Response(body, media_type="application/json")


@router.delete(
    "/{job_id}",
    response_model=JobOut,
    responses={
        204: {"description": "purge=true: the job and everything stored for it are gone"},
        **responses(
            *_AUTH,
            errors.JobNotFound,
            errors.JobAlreadyFinished,
            errors.JobNotFinished,
            errors.StoreUnavailable,
        ),
    },
    summary="Cancel a job (it stops at its next checkpoint); purge=true deletes a finished one",
)
def cancel_job(
    job_id: str,
    session: SessionDep,
    key: CallerDep,
    store: StoreDep,
    purge: Annotated[bool, Query(description="delete a finished job and all it stored")] = False,
) -> Response:
    if purge:
        service.purge_job(session, store, key, job_id)
        return Response(status_code=204)
    # The cancellation and its webhook outbox row commit together; delivery is queued after.
    job = service.cancel_job(session, key, job_id)
    return _json(job_out(job, timings=service.stage_timings(session, job.id)))


def _json(view: JobOut) -> Response:
    return Response(view.model_dump_json(), media_type="application/json")
