"""A job for people: its live events (SSE), its HTML report, and signed links to share both."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import HTMLResponse, StreamingResponse
from sqlalchemy.orm import Session, sessionmaker
from starlette.concurrency import run_in_threadpool

from api.deps import CallerDep, Credentials, SessionDep, StoreDep, get_caller
from api.errors import responses
from api.report import ReportFrame, render_report, thumbnail_of
from api.schemas import JobOut, ShareLink, ShareRequest
from api.services import jobs as service
from api.services import links
from api.services.events import job_events
from db import frames as frame_repo
from db import work
from db.models import Job
from scenecap.core import errors

router = APIRouter(prefix="/v2/media/categories", tags=["media jobs"])
# The page's own event stream needs a token: EventSource cannot send an Authorization header.
PAGE_TOKEN_SECONDS = 3600
TokenQuery = Annotated[
    str | None, Query(max_length=200, description="a share link's token, instead of the API key")
]


@dataclass(frozen=True)
class Viewed:
    """A job being looked at, and the link token its page's own event stream will carry."""

    job: Job
    token: str


async def viewed_job(
    job_id: str, request: Request, credentials: Credentials, token: TokenQuery = None
) -> Viewed:
    """The job, for its owner (API key) or for anyone holding a valid link token."""
    factory: sessionmaker[Session] = request.app.state.reader
    if token is not None:
        job = await run_in_threadpool(_read, factory, links.job_for_token, job_id, token)
        return Viewed(job, token)
    key = await get_caller(request, credentials)
    job = await run_in_threadpool(_read, factory, service.get_job, key, job_id)
    return Viewed(job, links.new_token(key, job.id, PAGE_TOKEN_SECONDS)[0])


def _read(factory: sessionmaker[Session], find: Callable[..., Job], *args: Any) -> Job:
    with factory() as session:
        return find(session, *args)


ViewedJob = Annotated[Viewed, Depends(viewed_job)]
_VIEW_ERRORS = responses(errors.Unauthenticated, errors.JobNotFound, json_beside=True)


@router.get(
    "/{job_id}/events",
    response_class=StreamingResponse,
    responses={
        200: {"content": {"text/event-stream": {}}, "description": "progress, then one end"},
        **_VIEW_ERRORS,
    },
    summary="Follow a job live (Server-Sent Events: progress, then completed|failed|cancelled)",
)
def job_events_stream(viewed: ViewedJob, request: Request) -> StreamingResponse:
    return StreamingResponse(
        job_events(request.app.state.reader, viewed.job.id),
        media_type="text/event-stream",
        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
    )


@router.get(
    "/{job_id}/report",
    response_class=HTMLResponse,
    responses={200: {"content": {"text/html": {}}}, **_VIEW_ERRORS},
    summary="The job as a page: frames with thumbnails and captions, merged results, progress",
)
def job_report(viewed: ViewedJob, session: SessionDep, store: StoreDep) -> HTMLResponse:
    job = viewed.job
    view = JobOut.of(job, timings=service.stage_timings(session, job.id))
    events_url = f"/v2/media/categories/{job.id}/events?token={viewed.token}"
    if job.segment_seconds:
        segments = work.captioned_segments(session, job.id)
        frames = [
            ReportFrame.of_segment(row, thumbnail_of(store, job.id, row.index)) for row in segments
        ]
    else:
        rows = frame_repo.stored_frames(session, job.id)
        frames = [ReportFrame.of(row, thumbnail_of(store, job.id, row.index)) for row in rows]
    page = render_report(view, frames, events_url)
    return HTMLResponse(page, headers={"Cache-Control": "private, no-store"})


@router.post(
    "/{job_id}/share",
    response_model=ShareLink,
    responses=responses(errors.Unauthenticated, errors.JobNotFound, errors.ValidationFailed),
    summary="A signed, expiring link to the job's report that works without the API key",
)
def share_job(
    job_id: str, session: SessionDep, key: CallerDep, body: ShareRequest | None = None
) -> ShareLink:
    job = service.get_job(session, key, job_id)
    lifetime = (body or ShareRequest()).expires_in
    token, expires_at = links.new_token(key, job.id, lifetime)
    base = f"/v2/media/categories/{job.id}"
    return ShareLink(
        report_url=f"{base}/report?token={token}",
        events_url=f"{base}/events?token={token}",
        expires_at=datetime.fromtimestamp(expires_at, UTC),
    )
