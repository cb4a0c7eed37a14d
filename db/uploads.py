"""Upload repository: what was uploaded, by whom, until when (the bytes are in the store)."""

from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from db.models import Upload
from scenecap.core.enums import utcnow


def create_upload(session: Session, **fields: object) -> Upload:
    upload = Upload(**fields)
    session.add(upload)
    session.flush()
    return upload


def get_owned_upload(
    session: Session, upload_id: uuid.UUID, api_key_id: uuid.UUID
) -> Upload | None:
    """The key's upload, unless it expired (another key's is None too: no existence leak)."""
    return session.scalar(
        select(Upload).where(
            Upload.id == upload_id, Upload.api_key_id == api_key_id, Upload.expires_at > utcnow()
        )
    )


def expired_uploads(session: Session, now: datetime, limit: int = 500) -> list[uuid.UUID]:
    return list(session.scalars(select(Upload.id).where(Upload.expires_at <= now).limit(limit)))


def delete_uploads(session: Session, upload_ids: list[uuid.UUID]) -> None:
    session.execute(delete(Upload).where(Upload.id.in_(upload_ids)))
