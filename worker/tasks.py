"""Celery tasks: thin adapters that open the runtime and call plain functions."""

from __future__ import annotations

import asyncio
import os
import socket
import uuid
from functools import cache

from db.session import make_engine, make_session_factory
from scenecap.core.settings import get_settings
from scenecap.core.tasks import (
    DELIVER_WEBHOOK,
    EXPIRE_MEDIA,
    PROCESS_JOB,
    REAP_JOBS,
    RUN_WORK_ITEM,
    SWEEP_WEBHOOKS,
)
from scenecap.store import open_store
from worker.celery_app import celery_app
from worker.maintenance.reaper import reap_lapsed_jobs
from worker.maintenance.retention import expire_stored_media
from worker.maintenance.webhooks import deliver_event, sweep_due_events
from worker.run import run_job
from worker.runtime import Runtime
from worker.segments.items import run_work_item
from worker.submit import JobQueue
from worker.vision import make_backend


@cache
def runtime() -> Runtime:
    """Build the per-process runtime on first use (after the prefork fork, never before)."""
    settings = get_settings()
    engine = make_engine(settings.database_url)
    return Runtime(
        settings=settings,
        session_factory=make_session_factory(engine, JobQueue(celery_app).send),
        store=open_store(settings),
        backend=make_backend(settings),
        worker_id=f"{socket.gethostname()}:{os.getpid()}",
        loop=asyncio.new_event_loop(),
    )


@celery_app.task(name=PROCESS_JOB, ignore_result=True)
def process_job(job_id: str) -> None:
    """Process one job; safe to run again for the same id (it resumes or does nothing)."""
    run_job(uuid.UUID(job_id), runtime())


@celery_app.task(name=RUN_WORK_ITEM, ignore_result=True)
def work_item(job_id: str, index: int) -> None:
    """One part of a segment-mode job; safe to run again (it does nothing once done)."""
    run_work_item(uuid.UUID(job_id), int(index), runtime())


@celery_app.task(name=REAP_JOBS, ignore_result=True)
def reap_jobs() -> int:
    """Re-queue or fail jobs and work items whose lease lapsed (scheduled by beat)."""
    rt = runtime()
    return reap_lapsed_jobs(rt.session_factory, rt.settings)


@celery_app.task(name=EXPIRE_MEDIA, ignore_result=True)
def expire_media() -> int:
    """Delete expired uploads and job media past retention (scheduled by beat)."""
    rt = runtime()
    return expire_stored_media(rt.session_factory, rt.store, rt.settings)


@celery_app.task(name=DELIVER_WEBHOOK, ignore_result=True)
def deliver_webhook(event_id: str) -> None:
    """One delivery attempt of a webhook event (a no-op unless it is due and unclaimed)."""
    rt = runtime()
    deliver_event(uuid.UUID(event_id), rt.session_factory, rt.settings)


@celery_app.task(name=SWEEP_WEBHOOKS, ignore_result=True)
def sweep_webhooks() -> int:
    """Queue the due events no task is handling (scheduled by beat)."""
    return sweep_due_events(runtime().session_factory)
