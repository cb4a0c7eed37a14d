"""/v2/media/completions: OpenAI-style chat completions over images and videos."""

from __future__ import annotations

from fastapi import APIRouter, Request
from starlette.responses import Response

from api.deps import CallerDep, InspectorDep, SessionDep, SettingsDep
from api.errors import responses
from api.responses import DeferredResponse
from api.services.completions import answer_when_done, create_completion
from scenecap.core import errors
from scenecap.schemas.completions import CompletionRequest, CompletionResponse

router = APIRouter(prefix="/v2/media", tags=["completions"])
PATHS = ("/v2/media/completions", "/v2/media/chat/completions")

_ERRORS = responses(
    errors.Unauthenticated,
    errors.MalformedJson,
    errors.ValidationFailed,
    errors.UnsupportedUrlScheme,
    errors.UrlNotAllowed,
    errors.InvalidMediaUrl,
    errors.MediaUnreachable,
    errors.RequestTooLarge,
    errors.MediaTooLarge,
    errors.UnsupportedMedia,
    errors.VisionBackendUnavailable,
    errors.CompletionTimeout,
    errors.ModelNotAllowed,
    errors.QuotaExceeded,
)


async def complete(
    body: CompletionRequest,
    request: Request,
    session: SessionDep,
    key: CallerDep,
    settings: SettingsDep,
    inspector: InspectorDep,
) -> Response:
    job_id = await create_completion(session, key, body, inspector, settings)
    return DeferredResponse(
        lambda: answer_when_done(
            request.app.state.reader,
            request.app.state.session_factory,
            key,
            job_id,
            timeout=settings.completion_wait_seconds,
        )
    )


# The OpenAI SDK posts to <base_url>/chat/completions, so base_url=<service>/v2/media works.
for path in PATHS:
    router.add_api_route(
        path.removeprefix("/v2/media"),
        complete,
        methods=["POST"],
        response_model=CompletionResponse,
        responses=_ERRORS,
        summary="Chat completion over images (and videos) with the vision model",
    )
