"""A job's max_total_tokens while it runs (docs/api.md, "Cost controls"), in frame and in
segment mode alike.

The plan was shrunk to fit by our estimates; this holds the line against what the model
reports. Before a request is sent its estimate is held on the job's row, and only if what
was reported so far, what is held for requests in flight, its estimate and what is kept back
for the summary fit the cap (every task of a job locks the same row). When the answer comes
back, the hold becomes what the model reported. A request that does not fit is not sent: the
frame or segment is left out and the results say `partial`.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass

from db import work
from worker.runtime import Runtime


@dataclass(frozen=True)
class Spend:
    """Spending against a job's max_total_tokens, with what is kept for its summary."""

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
