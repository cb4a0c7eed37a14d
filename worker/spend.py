"""A job's token cap while it runs (docs/api.md, "Cost controls"), in frame and in segment
mode alike: its max_total_tokens, or what the key's daily quota reserved for it if less.

Under a quota, the job reserved the least a job costs when it was submitted; once its media
is probed it reserves its plan's estimate (`reserve_plan`), or what the quota has left, and
its plan shrinks to that. The plan was shrunk to fit by our estimates; this holds the line
against what the model reports.

Before a request is sent its estimate is held on the job's row, and only if what
was reported so far, what is held for requests in flight, its estimate and what is kept back
for the summary fit the cap (every task of a job locks the same row). When the answer comes
back, the hold becomes what the model reported. A request that does not fit is not sent: the
frame or segment is left out and the results say `partial`.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, replace

from sqlalchemy.orm import Session

from db import reuse, spend, work
from scenecap.core.errors import QuotaExceeded
from worker.runtime import Runtime
from worker.spec import JobSpec


def reserve_plan(rt: Runtime, spec: JobSpec, estimate: int, least: int) -> JobSpec:
    """The spec with its reservation made its plan's `estimate` (or what the key's quota has
    left); unchanged for a job outside any quota. QUOTA_EXCEEDED if not even `least` is left."""
    if not spec.under_quota:
        return spec
    with rt.session_factory.begin() as session:
        return reserved_spec(session, spec, estimate, least)


def reserved_spec(session: Session, spec: JobSpec, estimate: int, least: int) -> JobSpec:
    """reserve_plan in the caller's transaction. A plan cut short by the quota is never
    offered for reuse to a later job, which may have room for all of it."""
    reserved = spend.reserve_plan(session, spec.id, spec.api_key_id, estimate)
    if reserved is not None and reserved < least:
        raise QuotaExceeded("the key's daily token quota has no room left for this job")
    if reserved is not None and reserved < estimate:
        reuse.forget(session, spec.id)
    return replace(spec, tokens_reserved=reserved)


@dataclass(frozen=True)
class Spend:
    """Spending against a job's token cap, with what is kept for its summary."""

    job_id: uuid.UUID
    reserve: int

    def hold(self, rt: Runtime, estimate: int) -> bool:
        """Hold `estimate` tokens for a request about to be sent; False if it would pass."""
        with rt.session_factory.begin() as session:
            return work.hold_tokens(session, self.job_id, estimate, self.reserve)

    def settle(self, rt: Runtime, estimate: int, reported: int) -> None:
        """A request held with `estimate` came back having cost `reported` tokens (a failed
        one: pass its estimate, it may have cost that)."""
        with rt.session_factory.begin() as session:
            work.settle_tokens(session, self.job_id, estimate, reported)

    def summary_fits(self, rt: Runtime) -> bool:
        """Whether the summary, at its reserve, still fits beside what was spent."""
        with rt.session_factory.begin() as session:
            return work.tokens_fit(session, self.job_id, self.reserve)
