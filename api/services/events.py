"""Server-Sent Events for one job: `progress` while it runs, then one terminal event.

The stream reads the job row (the same truth every API process sees) a few times a second
and sends only changes, with a comment line now and then so proxies keep the connection.
"""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections.abc import AsyncIterator
from typing import Any

from sqlalchemy.orm import Session, sessionmaker
from starlette.concurrency import run_in_threadpool

from api.schemas import JobOut
from db import frames, jobs
from scenecap.core.enums import JobStatus

POLL_SECONDS = 0.25
KEEPALIVE_SECONDS = 15.0
TERMINAL_EVENTS = {
    JobStatus.COMPLETED: "completed",
    JobStatus.FAILED: "failed",
    JobStatus.CANCELLED: "cancelled",
}


def format_event(event: str, data: dict[str, Any]) -> str:
    return f"event: {event}\ndata: {json.dumps(data, separators=(',', ':'))}\n\n"


def _snapshot(reader: sessionmaker[Session], job_id: uuid.UUID) -> JobOut | None:
    with reader() as session:
        job = jobs.get_job(session, job_id, with_results=True)
        if job is None:
            return None
        if job.status not in TERMINAL_EVENTS:
            return JobOut.of(job, with_results=False)
        return JobOut.of(job, timings=frames.stage_timings(session, job_id))


async def job_events(reader: sessionmaker[Session], job_id: uuid.UUID) -> AsyncIterator[str]:
    """Yield SSE messages until the job is terminal (the first message comes at once)."""
    yield f"retry: {int(POLL_SECONDS * 4000)}\n\n"
    last: tuple[str, str, int] | None = None
    quiet_since = time.monotonic()
    while True:
        job = await run_in_threadpool(_snapshot, reader, job_id)
        if job is None:  # Deleted meanwhile: nothing more will happen to it.
            return
        state = (job.status.value, job.stage, job.percent_complete)
        if state != last:
            last, quiet_since = state, time.monotonic()
            yield format_event(
                "progress",
                {
                    "job_id": str(job.job_id),
                    "status": job.status.value,
                    "stage": job.stage,
                    "percent_complete": job.percent_complete,
                },
            )
        if job.status in TERMINAL_EVENTS:
            yield format_event(TERMINAL_EVENTS[job.status], job.model_dump(mode="json"))
            return
        if time.monotonic() - quiet_since > KEEPALIVE_SECONDS:
            quiet_since = time.monotonic()
            yield ": keep-alive\n\n"
        await asyncio.sleep(POLL_SECONDS)  # the polling interval of the stream
