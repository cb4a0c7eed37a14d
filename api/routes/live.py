"""A job for people: its live events (SSE), its HTML report and pictures, and signed links
to share them (docs/api.md, "Sharing")."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Header, Query, Request, Response
from fastapi.responses import HTMLResponse, StreamingResponse
from sqlalchemy.orm import Session, sessionmaker
from starlette.concurrency import run_in_threadpool

from api.deps import CallerDep, Credentials, SessionDep, get_caller
from api.errors import responses
from api.report import ReportFrame, render_report
from api.services import jobs as service
from api.services import links
from api.services.events import EventStream, job_events
from api.services.playback import read_span, span_of
from api.views import job_out
from db import frames as frame_repo
from db import jobs, work
from scenecap.core import errors
from scenecap.core.enums import JobStatus
from scenecap.schemas import JobOut, PublicJobOut, ShareLink, ShareRequest
from scenecap.store import MediaStore, paths

router = APIRouter(prefix="/v2/media/categories", tags=["media jobs"])
# The page's own stream and pictures need a token: a browser cannot send the API key there.
PAGE_TOKEN_SECONDS = 3600
TokenQuery = Annotated[
    str | None,
    Query(max_length=links.MAX_TOKEN_CHARS, description="a share link's token, not the API key"),
]
# Pages and pictures opened from a share link never tell where they were opened from.
NO_REFERRER = {"Referrer-Policy": "no-referrer"}
# Stands for the view token in a cached page (each request gets its own).
_TOKEN = "__scenecap_view_token__"


@dataclass(frozen=True)
class Viewed:
    """A job being looked at, who owns it, and the token its page's own requests carry."""

    job_id: uuid.UUID
    api_key_id: uuid.UUID
    token: str
    public: bool  # opened with a share link's token, not the API key


async def viewed(
    job_id: str, request: Request, credentials: Credentials, token: TokenQuery = None
) -> Viewed:
    """The job, for its owner (API key) or for anyone holding a valid link token. A token is
    checked before the database is asked anything; share requests are rate-limited per
    client address and per token."""
    state = request.app.state
    if token is None:
        key = await get_caller(request, credentials)
        owned = service.parse_job_id(job_id)
        if not await run_in_threadpool(_read, state.reader, jobs.is_owned, owned, key.id):
            raise errors.JobNotFound(f"no job {job_id!r}")
        page_token, _ = links.new_token(state.share_key, key.id, owned, PAGE_TOKEN_SECONDS)
        return Viewed(owned, key.id, page_token, public=False)
    limiter = state.share_limiter
    if limiter is not None:
        await limiter.hit(f"address:{request.client.host if request.client else '-'}")
    try:
        parsed = uuid.UUID(job_id)
    except ValueError:
        raise errors.Unauthenticated("the link's token is not valid") from None
    grant = links.check_token(state.share_key, token, parsed)
    if limiter is not None:
        await limiter.hit(f"token:{links.fingerprint(token)}")
    await run_in_threadpool(_read, state.reader, links.check_grant, grant)
    return Viewed(parsed, grant.api_key_id, token, public=True)


def _read(factory: sessionmaker[Session], find: Callable[..., Any], *args: Any) -> Any:
    with factory() as session:
        return find(session, *args)


ViewedJob = Annotated[Viewed, Depends(viewed)]
_VIEW_ERRORS = responses(
    errors.Unauthenticated, errors.JobNotFound, errors.RateLimited, json_beside=True
)


@router.get(
    "/{job_id}/events",
    response_class=StreamingResponse,
    responses={
        200: {"content": {"text/event-stream": {}}, "description": "progress, then one end"},
        **_VIEW_ERRORS,
    },
    summary="Follow a job live (Server-Sent Events: progress, then completed|failed|cancelled)",
)
async def job_events_stream(seen: ViewedJob, request: Request) -> EventStream:
    state = request.app.state
    release = state.watchers.open(seen.job_id, seen.api_key_id)

    async def final() -> dict[str, Any]:
        view = await run_in_threadpool(_job_view, state.reader, seen.job_id)
        if seen.public:
            return PublicJobOut.of(view).model_dump(mode="json")
        return view.model_dump(mode="json")

    stream = job_events(
        state.watchers.watch_of(seen.job_id),
        seen.job_id,
        final,
        max_seconds=state.settings.stream_max_seconds,
    )
    response = EventStream(stream, release)
    response.headers.update(NO_REFERRER)
    return response


def _job_view(reader: sessionmaker[Session], job_id: uuid.UUID) -> JobOut:
    with reader() as session:
        job = jobs.get_job(session, job_id, with_results=True)
        if job is None:
            raise errors.JobNotFound(f"no job {job_id}")
        return job_out(job, timings=frame_repo.stage_timings(session, job_id))


@router.get(
    "/{job_id}/report",
    response_class=HTMLResponse,
    responses={200: {"content": {"text/html": {}}}, **_VIEW_ERRORS},
    summary="The job as a page: frames with thumbnails and captions, merged results, progress",
)
def job_report(seen: ViewedJob, request: Request, session: SessionDep) -> HTMLResponse:
    cache: dict[tuple[uuid.UUID, bool], str] = request.app.state.reports
    page = cache.get((seen.job_id, seen.public))
    if page is None:
        job = jobs.get_job(session, seen.job_id, with_results=True)
        if job is None:
            raise errors.JobNotFound(f"no job {seen.job_id}")
        view = job_out(job, timings=service.stage_timings(session, job.id))
        if job.segment_seconds:
            rows = work.captioned_segments(session, job.id)
            frames = [ReportFrame.of_segment(row) for row in rows]
        else:
            frames = [ReportFrame.of(row) for row in frame_repo.stored_frames(session, job.id)]
        page = render_report(view.public() if seen.public else view, frames, _TOKEN)
        if JobStatus(job.status).is_terminal:  # a finished job's page never changes again
            _remember(cache, (seen.job_id, seen.public), page)
    return HTMLResponse(
        page.replace(_TOKEN, seen.token),
        headers={"Cache-Control": "private, no-store", **NO_REFERRER},
    )


REPORTS_KEPT = 256


def _remember(
    cache: dict[tuple[uuid.UUID, bool], str], key: tuple[uuid.UUID, bool], page: str
) -> None:
    if len(cache) >= REPORTS_KEPT:
        cache.pop(next(iter(cache)))  # the oldest (dicts keep insertion order)
    cache[key] = page


@router.get(
    "/{job_id}/thumbnails/{index}.jpg",
    response_class=Response,
    responses={200: {"content": {"image/jpeg": {}}}, **_VIEW_ERRORS},
    summary="A frame's (or segment's) thumbnail, as the report shows it",
)
def job_thumbnail(seen: ViewedJob, index: int, request: Request) -> Response:
    store: MediaStore = request.app.state.store
    try:
        picture = store.get(paths.thumbnail(seen.job_id, index))
    except errors.StoredObjectMissing:
        raise errors.NotFound(f"no thumbnail {index} for this job") from None
    # A thumbnail never changes once written: the browser keeps it for the page's next visit.
    return Response(
        picture,
        media_type="image/jpeg",
        headers={"Cache-Control": "private, max-age=86400, immutable", **NO_REFERRER},
    )


@router.get(
    "/{job_id}/media",
    response_class=Response,
    responses={
        200: {"content": {"video/*": {}, "image/*": {}}},
        **_VIEW_ERRORS,
        **responses(errors.RangeNotSatisfiable),
    },
    summary="The job's media while it is kept, in byte ranges: what the report's player plays",
)
def job_media(
    seen: ViewedJob,
    request: Request,
    session: SessionDep,
    range: Annotated[str | None, Header(max_length=200)] = None,
) -> Response:
    store: MediaStore = request.app.state.store
    key = paths.media(seen.job_id)
    size = store.size(key)
    job = jobs.get_job(session, seen.job_id)
    if size is None or job is None:
        raise errors.NotFound(
            "this job's media is no longer kept (MEDIA_RETENTION_HOURS after the job ends)"
        )
    span = span_of(range, size)
    headers = {
        "Accept-Ranges": "bytes",
        "Content-Length": str(span.length),
        "Cache-Control": "private, max-age=3600",
        **NO_REFERRER,
    }
    if span.partial:
        headers["Content-Range"] = f"bytes {span.start}-{span.end}/{size}"
    return StreamingResponse(
        read_span(store, key, span),
        status_code=206 if span.partial else 200,
        media_type=(job.media_info or {}).get("mime") or "application/octet-stream",
        headers=headers,
    )


@router.post(
    "/{job_id}/share",
    response_model=ShareLink,
    responses=responses(errors.Unauthenticated, errors.JobNotFound, errors.ValidationFailed),
    summary="A signed, expiring link to the job's report that works without the API key",
)
def share_job(
    job_id: str,
    request: Request,
    session: SessionDep,
    key: CallerDep,
    body: ShareRequest | None = None,
) -> ShareLink:
    job = service.get_job(session, key, job_id)
    lifetime = (body or ShareRequest()).expires_in
    token, expires_at = links.new_token(request.app.state.share_key, key.id, job.id, lifetime)
    origin = request.app.state.settings.public_base_url.rstrip("/")
    base = f"{origin}/v2/media/categories/{job.id}"
    return ShareLink(
        report_url=f"{base}/report?token={token}",
        events_url=f"{base}/events?token={token}",
        expires_at=datetime.fromtimestamp(expires_at, UTC),
    )
