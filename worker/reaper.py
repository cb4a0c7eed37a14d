"""Bring lapsed jobs back to life (or to FAILED): run periodically by Celery beat."""

from __future__ import annotations

import logging

from sqlalchemy.orm import Session, sessionmaker

from db import jobs
from db.session import enqueue
from scenecap.core.errors import WorkerLost
from scenecap.core.settings import Settings
from scenecap.core.tasks import PROCESS_JOB

log = logging.getLogger(__name__)


def reap_lapsed_jobs(session_factory: sessionmaker[Session], settings: Settings) -> int:
    """Re-queue jobs whose worker vanished; fail those out of attempts. Returns how many."""
    requeued = 0
    with session_factory.begin() as session:
        lapsed = jobs.lapsed_jobs(session, pending_grace_seconds=settings.job_lease_seconds)
        for job in lapsed:
            if job.attempts >= settings.job_max_attempts:
                jobs.fail_job(
                    session,
                    job.id,
                    code=WorkerLost.code,
                    message=f"the worker was lost {job.attempts} times; giving up",
                )
            elif jobs.requeue_job(session, job.id, settings.job_lease_seconds):
                # Sent after this transaction commits: the worker must see the job PENDING.
                enqueue(session, PROCESS_JOB, str(job.id))
                requeued += 1
    if lapsed:
        log.info("reaper: %d lapsed jobs, %d re-queued", len(lapsed), requeued)
    return len(lapsed)
