"""Celery tasks: thin adapters that open the runtime and call the pipeline."""

from __future__ import annotations

import asyncio
import os
import socket
import uuid
from functools import cache

from db.session import make_engine, make_session_factory
from scenecap.settings import get_settings
from worker.celery_app import MEDIA_QUEUE, celery_app
from worker.reaper import reap_lapsed_jobs
from worker.runner import Runtime, run_job
from worker.vision import make_backend


@cache
def runtime() -> Runtime:
    """Build the per-process runtime on first use (after the prefork fork, never before)."""
    settings = get_settings()
    return Runtime(
        settings=settings,
        session_factory=make_session_factory(make_engine(settings.database_url)),
        backend=make_backend(settings),
        worker_id=f"{socket.gethostname()}:{os.getpid()}",
        loop=asyncio.new_event_loop(),
    )


@celery_app.task(name="scenecap.media.process_job", ignore_result=True)
def process_job(job_id: str) -> None:
    """Process one job; safe to run again for the same id (it resumes or does nothing)."""
    run_job(uuid.UUID(job_id), runtime())


def _enqueue(job_id: uuid.UUID) -> None:
    process_job.apply_async(args=[str(job_id)], queue=MEDIA_QUEUE)


@celery_app.task(name="scenecap.media.reap_jobs", ignore_result=True)
def reap_jobs() -> int:
    """Re-queue or fail jobs whose lease lapsed (scheduled by beat)."""
    rt = runtime()
    return reap_lapsed_jobs(rt.session_factory, rt.settings, _enqueue)
