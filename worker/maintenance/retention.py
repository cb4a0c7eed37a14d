"""Forget what the store need not keep: uploads past UPLOAD_TTL_HOURS, each job's fetched
media MEDIA_RETENTION_HOURS after the job ended (its thumbnails stay with its report until
the job is purged), whatever a late worker wrote under a purged job, and partial writes a
crash left behind. Run by beat every RETENTION_INTERVAL_SECONDS."""

from __future__ import annotations

import logging
from datetime import timedelta

from sqlalchemy.orm import Session, sessionmaker

from db import jobs, uploads
from scenecap.core.enums import as_utc, utcnow
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
    return deleted + sweep_purged(session_factory, store) + store.delete_partials(PARTIAL_AGE)


# A purged job's worker stops at its next checkpoint, and a request in flight then returns
# within VLM_TIMEOUT_SECONDS per attempt: an hour after the purge, nobody can write under it.
PURGE_WATCH = timedelta(hours=1)
# A write in progress moves at least every UPLOAD_IDLE_SECONDS; one untouched this long was
# left by a crash.
PARTIAL_AGE = timedelta(hours=1)


def sweep_purged(session_factory: sessionmaker[Session], store: MediaStore) -> int:
    """Delete what late workers wrote under purged jobs; forget the tombstones whose watch
    is over. Returns how many objects went."""
    with session_factory() as session:
        tombstones = [(t.job_id, t.purged_at) for t in jobs.purged_jobs(session)]
    deleted = sum(store.delete_prefix(paths.job(job_id)) for job_id, _at in tombstones)
    over = utcnow() - PURGE_WATCH
    done = [job_id for job_id, purged_at in tombstones if as_utc(purged_at) < over]
    if done:
        with session_factory.begin() as session:
            jobs.bury(session, done)
    if deleted:
        log.info("retention: %d objects written under purged jobs deleted", deleted)
    return deleted
