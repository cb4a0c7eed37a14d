"""Write a running job's stage and percent to Postgres, a few times a second at most."""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Callable

from sqlalchemy.orm import Session, sessionmaker

from db import frames, jobs, work
from scenecap.core.enums import JobStage
from scenecap.core.errors import JobCancelled
from worker.runtime import Runtime

# Where each stage starts and ends on the 0-100 scale.
STAGE_SPANS: dict[JobStage, tuple[int, int]] = {
    JobStage.QUEUED: (0, 0),
    JobStage.DOWNLOADING: (1, 10),
    JobStage.DETECTING_SCENES: (10, 25),
    JobStage.TRANSCRIBING: (25, 40),  # beside the frame work: shown while it is waited for
    JobStage.EXTRACTING_FRAMES: (25, 40),
    JobStage.CAPTIONING: (40, 92),
    JobStage.SUMMARIZING: (92, 99),
}


class ProgressReporter:
    """Throttled progress writes that double as cancellation checkpoints and lease renewals.

    At most one write per `min_interval` (stage changes always write); a cancelled job is
    noticed at the first write after the cancellation. The lock guards only the bookkeeping:
    concurrent frames never queue behind one another's database round trip.

    With `item` (a work item's index, segment mode) the lease renewed is the item's, and the
    stage times of the job's many tasks add up.
    """

    def __init__(
        self,
        session_factory: sessionmaker[Session],
        job_id: uuid.UUID,
        *,
        lease_seconds: int,
        min_interval: float,
        listener: Callable[[JobStage, int], None] | None = None,
        item: int | None = None,
    ) -> None:
        self.session_factory = session_factory
        self.job_id = job_id
        self.lease_seconds = lease_seconds
        self.min_interval = min_interval
        # Told of each write (stage, percent): the CLI's progress bar.
        self.listener = listener
        self.item = item
        self._lock = threading.Lock()
        self._stage: JobStage | None = None
        self._percent = 0
        self._written_at = -float("inf")
        self._stage_started = time.monotonic()
        self.timings: dict[str, float] = {}

    @classmethod
    def of(cls, rt: Runtime, job_id: uuid.UUID, item: int | None = None) -> ProgressReporter:
        """The reporter of a job's task, as the runtime's settings configure it."""
        return cls(
            rt.session_factory,
            job_id,
            lease_seconds=rt.settings.job_lease_seconds,
            min_interval=rt.settings.progress_min_interval_seconds,
            listener=rt.progress_listener,
            item=item,
        )

    def stage(self, stage: JobStage, fraction: float = 0.0) -> None:
        """Report progress through a stage (fraction 0..1); raise JobCancelled if cancelled."""
        if not self.update(stage, fraction):
            raise JobCancelled("the job was cancelled")

    def update(self, stage: JobStage, fraction: float = 0.0) -> bool:
        """Like stage(), but return False when cancelled instead of raising.

        For code in worker threads: an exception raised there after its awaiting task was
        cancelled would land on a future nobody reads (and be logged as an error).
        """
        start, end = STAGE_SPANS[stage]
        percent = min(99, round(start + (end - start) * max(0.0, min(1.0, fraction))))
        with self._lock:
            now = time.monotonic()
            if stage == self._stage and now - self._written_at < self.min_interval:
                self._percent = max(self._percent, percent)
                return True
            ended = self._end_stage(now) if stage != self._stage else None
            self._stage, self._percent = stage, max(self._percent, percent)
            self._written_at = now
            percent = self._percent
        with self.session_factory.begin() as session:
            if ended is not None:
                self._record_time(session, *ended)
            running = jobs.record_progress(
                session,
                self.job_id,
                stage=stage,
                percent=percent,
                lease_seconds=self.lease_seconds if self.item is None else None,
            )
            if self.item is not None:
                work.renew_item(session, self.job_id, self.item, self.lease_seconds)
        if self.listener is not None:
            self.listener(stage, percent)
        return running

    def finish(self) -> None:
        """Record the time of the stage in progress (call when the work is done)."""
        with self._lock:
            ended = self._end_stage(time.monotonic())
            self._stage = None
        if ended is not None:
            with self.session_factory.begin() as session:
                self._record_time(session, *ended)

    def add_time(self, stage: JobStage, seconds: float) -> None:
        """Record time spent in a stage that ran beside the others (transcribing)."""
        self.timings[stage.value] = self.timings.get(stage.value, 0.0) + seconds
        with self.session_factory.begin() as session:
            self._record_time(session, stage.value, self.timings[stage.value])

    def _record_time(self, session: Session, stage: str, seconds: float) -> None:
        if self.item is None:
            frames.record_stage_time(session, self.job_id, stage, seconds)
        else:  # this task's share only: the stage's total is what every task spent in it
            frames.record_stage_time(session, self.job_id, stage, seconds, add=True)

    def _end_stage(self, now: float) -> tuple[str, float] | None:
        # Called under the lock: close the current stage's clock and start the next one's.
        previous, started = self._stage, self._stage_started
        self._stage_started = now
        if previous is None:
            return None
        self.timings[previous.value] = self.timings.get(previous.value, 0.0) + now - started
        if self.item is not None:
            return previous.value, now - started
        return previous.value, self.timings[previous.value]

    def still_running(self) -> bool:
        """A cancellation checkpoint between frames (a write, unless one was just made)."""
        if self._stage is None:
            return True
        start, end = STAGE_SPANS[self._stage]
        fraction = 0.0 if end == start else (self._percent - start) / (end - start)
        return self.update(self._stage, fraction)
