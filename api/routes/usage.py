"""GET /v2/usage: what your jobs used, per day."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query

from api.deps import CallerDep, SessionDep
from api.errors import responses
from api.services.usage import usage_report
from scenecap.core import errors
from scenecap.schemas.cost import UsageReport

router = APIRouter(prefix="/v2", tags=["usage"])


@router.get(
    "/usage",
    response_model=UsageReport,
    response_model_by_alias=True,
    responses=responses(errors.Unauthenticated, errors.ValidationFailed, errors.RateLimited),
    summary="Your jobs, frames, segments, tokens, audio and media seconds, per UTC day",
)
def usage(
    session: SessionDep,
    key: CallerDep,
    first: Annotated[
        str | None, Query(alias="from", max_length=10, description="YYYY-MM-DD (UTC)")
    ] = None,
    last: Annotated[
        str | None, Query(alias="to", max_length=10, description="YYYY-MM-DD (UTC), inclusive")
    ] = None,
) -> UsageReport:
    return usage_report(session, key, first, last)
