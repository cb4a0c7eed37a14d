"""Waiting for a job to end without blocking the API: polls in short thread hops, sleeps on
the event loop (a request waiting here holds no thread and no connection)."""

from __future__ import annotations

import asyncio
import time
import uuid

from sqlalchemy.orm import Session, sessionmaker
from starlette.concurrency import run_in_threadpool

from db import jobs
from db.models import Job
from scenecap.core.enums import JobKind, JobStatus


async def wait_for_terminal(
    reader: sessionmaker[Session],
    api_key_id: uuid.UUID,
    job_id: uuid.UUID,
    timeout: float,
    kind: JobKind = JobKind.CATEGORIES,
) -> Job | None:
    """The job once it has ended, or None if it is still running after `timeout` seconds."""

    def read() -> Job | None:
        with reader() as session:
            return jobs.get_owned_job(session, job_id, api_key_id, kind)

    deadline = time.monotonic() + timeout
    delay = 0.05
    while True:
        job = await run_in_threadpool(read)
        if job is not None and JobStatus(job.status).is_terminal:
            return job
        left = deadline - time.monotonic()
        if left <= 0:
            return None
        await asyncio.sleep(min(delay, left))  # polling back-off, bounded by the deadline
        delay = min(0.5, delay * 1.5)
