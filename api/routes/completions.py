"""/v2/media/completions: OpenAI-style chat completions over images and videos."""

from __future__ import annotations

from fastapi import APIRouter, Request

from api.deps import ApiKeyDep, InspectorDep, QueueDep, SessionDep, SettingsDep
from api.errors import responses
from api.schemas import CompletionRequest, CompletionResponse
from api.services.completions import await_completion, create_completion
from scenecap import errors

router = APIRouter(prefix="/v2/media", tags=["completions"])

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
)


def complete(
    body: CompletionRequest,
    request: Request,
    session: SessionDep,
    key: ApiKeyDep,
    settings: SettingsDep,
    queue: QueueDep,
    inspector: InspectorDep,
) -> CompletionResponse:
    job = create_completion(session, key, body, inspector)
    # Commit before enqueueing: the worker must find the row.
    session.commit()
    queue.enqueue_job(job.id)
    answer = await_completion(
        request.app.state.session_factory,
        session,
        key,
        job,
        timeout=settings.completion_wait_seconds,
    )
    return CompletionResponse.model_validate(answer)


# The OpenAI SDK posts to <base_url>/chat/completions, so base_url=<service>/v2/media works.
for path in ("/completions", "/chat/completions"):
    router.add_api_route(
        path,
        complete,
        methods=["POST"],
        response_model=CompletionResponse,
        responses=_ERRORS,
        summary="Chat completion over images (and videos) with the vision model",
    )
