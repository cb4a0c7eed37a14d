"""GET /v2/media/search: where in your videos something is seen, said or labelled; and
POST /v2/media/categories/{job_id}/ask: what happens in one of them, and when."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Request

from api.deps import CallerDep, SessionDep, SettingsDep
from api.errors import responses
from api.services.ask import answer_question
from api.services.search import search_page
from scenecap.core import errors
from scenecap.schemas import Text
from scenecap.schemas.search import AskAnswer, AskRequest, SearchPage

router = APIRouter(prefix="/v2/media", tags=["search"])


@router.get(
    "/search",
    response_model=SearchPage,
    responses=responses(errors.Unauthenticated, errors.ValidationFailed, errors.RateLimited),
    summary="Full-text search over your completed jobs: captions, chapters, speech, labels",
)
def search(
    session: SessionDep,
    key: CallerDep,
    q: Annotated[
        Text,
        Query(
            max_length=500,
            description='words; "a phrase", `or` between two words, -word to exclude',
        ),
    ],
    limit: Annotated[int, Query(ge=1, le=100)] = 20,
    cursor: Annotated[str | None, Query(max_length=200)] = None,
    job_id: Annotated[str | None, Query(max_length=64)] = None,
) -> SearchPage:
    return search_page(session, key, q, limit=limit, cursor=cursor, job_id=job_id)


@router.post(
    "/categories/{job_id}/ask",
    response_model=AskAnswer,
    responses=responses(
        errors.Unauthenticated,
        errors.JobNotFound,
        errors.JobNotFinished,
        errors.MalformedJson,
        errors.ValidationFailed,
        errors.RateLimited,
        errors.QuotaExceeded,
        errors.VisionBackendUnavailable,
    ),
    summary="Ask a question about a completed job; answered from its passages, with times",
    tags=["search"],
)
async def ask(
    job_id: str, body: AskRequest, request: Request, key: CallerDep, settings: SettingsDep
) -> AskAnswer:
    state = request.app.state
    return await answer_question(
        state.reader, state.session_factory, state.question_model, settings, key, job_id, body
    )
