"""/v2/media/uploads: send a local file instead of a URL."""

from __future__ import annotations

import logging
from typing import Annotated

from fastapi import APIRouter, Header, Query, Request, Response
from starlette.requests import ClientDisconnect

from api.deps import CallerDep, SettingsDep, StoreDep
from api.errors import responses
from api.services.uploads import disposition_name, receive_upload, within_idle
from scenecap.core import errors
from scenecap.core.media import file_name
from scenecap.schemas import UploadOut

log = logging.getLogger(__name__)
router = APIRouter(prefix="/v2/media", tags=["uploads"])
PATH = "/v2/media/uploads"


@router.post(
    "/uploads",
    status_code=201,
    response_model=UploadOut,
    responses=responses(
        errors.Unauthenticated,
        errors.MediaTooLarge,
        errors.UnsupportedMedia,
        errors.RateLimited,
        errors.TooManyUploads,
        errors.RequestTimeout,
        errors.StoreUnavailable,
    ),
    summary="Upload a video or image (the raw bytes as the body); submit it as upload://<id>",
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {
                kind: {"schema": {"type": "string", "format": "binary"}}
                for kind in ("video/*", "image/*")
            },
        }
    },
)
async def upload(
    request: Request,
    key: CallerDep,
    settings: SettingsDep,
    store: StoreDep,
    content_type: Annotated[str, Header()] = "",
    content_length: Annotated[int | None, Header()] = None,
    filename: Annotated[
        str | None, Query(max_length=1024, description="the file's name, kept as media_name")
    ] = None,
    content_disposition: Annotated[str | None, Header(max_length=2048)] = None,
) -> UploadOut | Response:
    if not content_type.startswith(("video/", "image/")):
        raise errors.UnsupportedMedia(
            "send the file's bytes with Content-Type: video/... or image/...",
            {"content_type": content_type},
        )
    limit = settings.max_media_bytes
    if content_length is not None and content_length > limit:
        raise errors.MediaTooLarge(
            f"the upload is {content_length} bytes; the limit is {limit}", {"limit": limit}
        )
    with request.app.state.uploads.slot(key.id):
        try:
            received = await receive_upload(
                store,
                request.app.state.session_factory,
                key,
                within_idle(request.stream(), settings.upload_idle_seconds),
                max_bytes=limit,
                ttl_hours=settings.upload_ttl_hours,
                name=file_name(filename or disposition_name(content_disposition)),
            )
        except ClientDisconnect:  # gone mid-upload: nothing was kept, nobody to tell
            log.info("an upload's client went away; nothing was stored")
            return Response(status_code=400)
    return UploadOut(
        upload_id=received.id,
        media_url=f"upload://{received.id}",
        bytes=received.bytes,
        sha256=received.sha256,
        content_type=received.content_type,
        name=received.name,
        expires_at=received.expires_at,
    )
