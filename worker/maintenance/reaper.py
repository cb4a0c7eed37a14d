"""Bring lapsed jobs back to life (or to FAILED): run periodically by Celery beat."""

from __future__ import annotations

import logging

from sqlalchemy.orm import Session, sessionmaker

from db import jobs, work
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
    return len(lapsed) + reap_lapsed_items(session_factory, settings)


def reap_lapsed_items(session_factory: sessionmaker[Session], settings: Settings) -> int:
    """The same for segment-mode work items: a lapsed item is queued again, and one out of
    attempts fails its job (docs/architecture.md, "Long videos")."""
    with session_factory.begin() as session:
        lapsed = work.lapsed_items(session)
        for item in lapsed:
            if item.attempts >= settings.job_max_attempts:
                jobs.fail_job(
                    session,
                    item.job_id,
                    code=WorkerLost.code,
                    message=f"the worker was lost {item.attempts} times on a part of the job "
                    f"({item.kind}); giving up",
                )
            else:
                work.requeue_item(session, item, settings.job_lease_seconds)
    if lapsed:
        log.info("reaper: %d lapsed work items", len(lapsed))
    return len(lapsed)
