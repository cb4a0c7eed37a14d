"""How a job's work ends: completed with its results, failed with a code, or put back for a
later attempt when what failed was a service that is briefly away (the store, a model, the
database), with backoff, counted against JOB_MAX_ATTEMPTS."""

from __future__ import annotations

import logging
import random
import uuid
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

from sqlalchemy.exc import OperationalError

from db import jobs, spend, work
from db.models import WorkItem
from db.session import enqueue
from db.spend import Spent
from scenecap.core.errors import (
    DatabaseUnavailable,
    JobCancelled,
    ScenecapError,
    SpeechBackendUnavailable,
    StoreUnavailable,
    VisionBackendUnavailable,
)
from scenecap.core.tasks import PROCESS_JOB
from scenecap.store import paths
from worker.job.progress import ProgressReporter
from worker.job.spec import JobSpec
from worker.job.usage import JobUsage
from worker.runtime import Runtime
from worker.speech.transcript import Transcript
from worker.vision.base import Usage

log = logging.getLogger(__name__)


# Failures of a service, not of the job: worth another attempt later.
PASSING = (
    StoreUnavailable,
    VisionBackendUnavailable,
    SpeechBackendUnavailable,
    DatabaseUnavailable,
)
BACKOFF_SECONDS = 5.0  # before the second attempt; doubled for each one after
MAX_BACKOFF_SECONDS = 300.0


@dataclass(frozen=True)
class Attempt:
    """Which attempt this is, of the job or of one of its work items."""

    number: int
    item: WorkItem | None = None


def run_guarded(rt: Runtime, job_id: uuid.UUID, attempt: Attempt, task: Callable[[], None]) -> None:
    """Run a job's work (all of it, or one work item). A passing outage puts it back for a
    later attempt while it has attempts left; any other failure (or the last attempt's) ends
    the job FAILED with its code; a cancellation was recorded by whoever cancelled."""
    try:
        task()
    except JobCancelled:
        log.info("job %s was cancelled; stopped at a checkpoint", job_id)
        with rt.session_factory() as session:
            purged = not jobs.exists(session, job_id)
        if purged:  # whatever its work wrote after the purge goes too
            rt.store.delete_prefix(paths.job(job_id))
    except (*PASSING, OperationalError) as exc:
        error = exc if isinstance(exc, ScenecapError) else DatabaseUnavailable(str(exc.orig))
        if attempt.number >= rt.settings.job_max_attempts:
            log.info("job %s failed: %s %s", job_id, error.code, error.message)
            fail(rt, job_id, error.code, error.message)
        else:
            delay = retry_later(rt, job_id, attempt)
            log.warning(
                "job %s: %s (%s); attempt %d again in %.0f s",
                job_id,
                error.code,
                error.message,
                attempt.number + 1,
                delay,
            )
    except ScenecapError as exc:
        log.info("job %s failed: %s %s", job_id, exc.code, exc.message)
        fail(rt, job_id, exc.code, exc.message)
    except Exception:
        log.exception("job %s failed with an unexpected error", job_id)
        fail(rt, job_id, "INTERNAL_ERROR", "an unexpected error stopped the job; it was logged")


def finish(
    rt: Runtime,
    spec: JobSpec,
    progress: ProgressReporter,
    results: dict[str, Any],
    usage: JobUsage,
    summary: Usage | None = None,
    *,
    transcript: Transcript | None = None,
    partial: bool = False,
) -> None:
    """The tail of every job: its results (`partial` if something was left out for the
    budget, its transcript if it has one) and usage stored, the job COMPLETED. What its
    `summary` (or its answer) and its speech cost goes to the key's ledger whatever became of
    the job meanwhile; its frames and segments are in the ledger already."""
    if partial:
        results["partial"] = True
    heard = 0.0
    if transcript is not None:
        results["transcript"] = transcript.as_result()
        heard = round(transcript.audio_seconds, 3)
        usage = replace(usage, audio_seconds=heard)
    summary = summary or Usage()
    unrecorded = Spent(summary.prompt_tokens, summary.completion_tokens, audio_seconds=heard)
    progress.finish()
    with rt.session_factory.begin() as session:
        spend.record(session, spec.api_key_id, unrecorded)
        completed = jobs.complete_job(session, spec.id, results=results, usage=usage.as_dict())
    if not completed:
        raise JobCancelled("the job was cancelled")
    log.info("job %s completed", spec.id)


def retry_later(rt: Runtime, job_id: uuid.UUID, attempt: Attempt) -> float:
    """Queue the job (or its work item) again after a backoff; returns the delay."""
    delay = min(MAX_BACKOFF_SECONDS, BACKOFF_SECONDS * 2 ** (attempt.number - 1))
    delay *= random.uniform(0.8, 1.2)
    lease = rt.settings.job_lease_seconds + delay  # the reaper leaves it alone until then
    with rt.session_factory.begin() as session:
        if attempt.item is None:
            if jobs.requeue_job(session, job_id, round(lease)):
                enqueue(session, PROCESS_JOB, str(job_id), countdown=delay)
        else:
            work.requeue_item(session, attempt.item, round(lease), countdown=delay)
    return delay


def fail(rt: Runtime, job_id: uuid.UUID, code: str, message: str) -> None:
    with rt.session_factory.begin() as session:
        jobs.fail_job(session, job_id, code=code, message=message)
