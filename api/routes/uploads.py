"""/v2/media/uploads: send a local file instead of a URL."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Header, Request

from api.deps import CallerDep, SettingsDep, StoreDep
from api.errors import responses
from api.schemas import UploadOut
from api.services.uploads import receive_upload
from scenecap.core import errors

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
) -> UploadOut:
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
    received = await receive_upload(
        store,
        request.app.state.session_factory,
        key,
        request.stream(),
        max_bytes=limit,
        ttl_hours=settings.upload_ttl_hours,
    )
    return UploadOut(
        upload_id=received.id,
        media_url=f"upload://{received.id}",
        bytes=received.bytes,
        sha256=received.sha256,
        content_type=received.content_type,
        expires_at=received.expires_at,
    )
