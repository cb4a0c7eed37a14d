"""How a job's work ends: completed with its results, or failed with a code."""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable
from typing import Any

from db import jobs
from scenecap.core.errors import JobCancelled, ScenecapError
from worker.runtime import Runtime

log = logging.getLogger(__name__)


def settle(rt: Runtime, job_id: uuid.UUID, work: Callable[[], None]) -> None:
    """Run a job's work (all of it, or one work item); a failure ends the job FAILED with its
    code (a cancellation was recorded by whoever cancelled)."""
    try:
        work()
    except JobCancelled:
        log.info("job %s was cancelled; stopped at a checkpoint", job_id)
    except ScenecapError as exc:
        log.info("job %s failed: %s %s", job_id, exc.code, exc.message)
        fail(rt, job_id, exc.code, exc.message)
    except Exception:
        log.exception("job %s failed with an unexpected error", job_id)
        fail(rt, job_id, "INTERNAL_ERROR", "an unexpected error stopped the job; it was logged")


def complete(
    rt: Runtime, job_id: uuid.UUID, results: dict[str, Any], usage: dict[str, Any]
) -> None:
    with rt.session_factory.begin() as session:
        if not jobs.complete_job(session, job_id, results=results, usage=usage):
            raise JobCancelled("the job was cancelled")
    log.info("job %s completed", job_id)


def fail(rt: Runtime, job_id: uuid.UUID, code: str, message: str) -> None:
    with rt.session_factory.begin() as session:
        jobs.fail_job(session, job_id, code=code, message=message)
