"""Bring lapsed jobs back to life (or to FAILED): run periodically by Celery beat."""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable

from sqlalchemy.orm import Session, sessionmaker

from db import jobs
from scenecap.settings import Settings

log = logging.getLogger(__name__)


def reap_lapsed_jobs(
    session_factory: sessionmaker[Session],
    settings: Settings,
    enqueue: Callable[[uuid.UUID], None],
) -> int:
    """Re-queue jobs whose worker vanished; fail those out of attempts. Returns how many."""
    with session_factory.begin() as session:
        lapsed = jobs.lapsed_jobs(session, pending_grace_seconds=settings.job_lease_seconds)
        requeued: list[uuid.UUID] = []
        for job in lapsed:
            if job.attempts >= settings.job_max_attempts:
                jobs.fail_job(
                    session,
                    job.id,
                    code="WORKER_LOST",
                    message=f"the worker was lost {job.attempts} times; giving up",
                )
            elif jobs.requeue_job(session, job.id, settings.job_lease_seconds):
                requeued.append(job.id)
    # Enqueue after commit: the worker must see the job PENDING. (The WORKER_LOST events
    # written above are sent by the outbox sweep, which beat runs on the same interval.)
    for job_id in requeued:
        enqueue(job_id)
    if lapsed:
        log.info("reaper: %d lapsed jobs, %d re-queued", len(lapsed), len(requeued))
    return len(lapsed)
