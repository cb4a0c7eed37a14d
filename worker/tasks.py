"""Celery tasks: thin adapters that open the runtime and call the pipeline."""

from __future__ import annotations

import asyncio
import os
import socket
import uuid
from functools import cache

from db.session import make_engine, make_session_factory
from scenecap.settings import get_settings
from worker.celery_app import MEDIA_QUEUE, WEBHOOKS_QUEUE, celery_app
from worker.reaper import reap_lapsed_jobs
from worker.runner import Runtime, run_job
from worker.vision import make_backend
from worker.webhooks import deliver_event, sweep_due_events


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
        enqueue_webhook=_enqueue_webhook,
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


def _enqueue_webhook(event_id: uuid.UUID, delay: float) -> None:
    deliver_webhook.apply_async(args=[str(event_id)], queue=WEBHOOKS_QUEUE, countdown=delay or None)


@celery_app.task(name="scenecap.webhooks.deliver", ignore_result=True)
def deliver_webhook(event_id: str) -> None:
    """One delivery attempt of a webhook event (a no-op unless it is due and unclaimed)."""
    rt = runtime()
    deliver_event(uuid.UUID(event_id), rt.session_factory, rt.settings, _enqueue_webhook)


@celery_app.task(name="scenecap.webhooks.sweep", ignore_result=True)
def sweep_webhooks() -> int:
    """Queue the due events no task is handling (scheduled by beat)."""
    return sweep_due_events(runtime().session_factory, _enqueue_webhook)
