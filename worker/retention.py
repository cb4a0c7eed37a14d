"""Forget what the store need not keep: uploads past UPLOAD_TTL_HOURS, and each job's fetched
media MEDIA_RETENTION_HOURS after the job ended (its thumbnails stay with its report until
the job is purged). Run by beat every RETENTION_INTERVAL_SECONDS."""

from __future__ import annotations

import logging
from datetime import timedelta

from sqlalchemy.orm import Session, sessionmaker

from db import jobs, uploads
from scenecap.core.enums import utcnow
from scenecap.core.settings import Settings
from scenecap.store import MediaStore, paths

log = logging.getLogger(__name__)


def expire_stored_media(
    session_factory: sessionmaker[Session], store: MediaStore, settings: Settings
) -> int:
    """Delete expired uploads and retained media; return how many objects went."""
    now = utcnow()
    with session_factory() as session:
        expired = uploads.expired_uploads(session, now)
        ended = jobs.jobs_with_expired_media(
            session, now - timedelta(hours=settings.media_retention_hours)
        )
    # The objects first: a row outliving its object is retried next time, not lost track of.
    deleted = sum(store.delete_prefix(paths.upload(upload_id)) for upload_id in expired)
    deleted += sum(
        store.delete_prefix(paths.media(job_id)) + store.delete_prefix(paths.probe(job_id))
        for job_id in ended
    )
    with session_factory.begin() as session:
        uploads.delete_uploads(session, expired)
        jobs.mark_media_deleted(session, ended)
    if expired or ended:
        log.info("retention: %d uploads and %d jobs' media deleted", len(expired), len(ended))
    return deleted
