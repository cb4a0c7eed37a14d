"""Run one job: claim it, prepare its media, and hand it to its mode (docs/architecture.md,
"Data flow"): a chat completion, frame mode (worker/frames), or segment mode
(worker/segments, whose work items then finish it). A job whose media an earlier job of the
key already analysed with the same plan takes that job's results instead.
"""

from __future__ import annotations

import logging
import tempfile
import uuid
from pathlib import Path

from db import jobs
from scenecap.core.enums import JobKind
from scenecap.core.errors import JobCancelled, WorkerLost
from scenecap.core.logs import job_context
from worker.completion import answer_completion
from worker.frames.run import analyse
from worker.job.media import prepare
from worker.job.outcome import Attempt, fail, finish, run_guarded
from worker.job.progress import ProgressReporter
from worker.job.reuse import Reused
from worker.job.spec import JobSpec
from worker.runtime import Runtime
from worker.segments.flow import start_segments

log = logging.getLogger(__name__)


def run_job(job_id: uuid.UUID, rt: Runtime) -> None:
    """Process one job to a terminal state (or leave it to its canceller)."""
    with job_context(job_id):
        with rt.session_factory.begin() as session:
            job = jobs.claim_job(session, job_id, rt.worker_id, rt.settings.job_lease_seconds)
            if job is None:
                log.info("job %s is not pending or running; nothing to do", job_id)
                return
            spec, attempts = JobSpec.of(job), job.attempts
        if attempts > rt.settings.job_max_attempts:
            fail(rt, job_id, WorkerLost.code, f"the job was interrupted {attempts - 1} times")
            return
        progress = ProgressReporter.of(rt, job_id)

        def work() -> None:
            try:
                _run(spec, rt, progress)
            except JobCancelled:
                progress.finish()  # a cancelled job shows the time of the stage it stopped in
                raise

        run_guarded(rt, job_id, Attempt(attempts), work)


def _run(spec: JobSpec, rt: Runtime, progress: ProgressReporter) -> None:
    if spec.kind == JobKind.COMPLETION:
        answer_completion(spec, rt, progress)
        return
    with tempfile.TemporaryDirectory(prefix="scenecap-") as directory:
        media = prepare(spec, rt, progress, Path(directory))
        if isinstance(media, Reused):
            finish(rt, spec, progress, media.results, media.usage)
        elif spec.segment_seconds is not None:
            start_segments(spec, media.info, rt, progress)
            progress.finish()  # the job's work items finish it
        else:
            analyse(spec, media, rt, progress)
