"""A job's token budget while it runs (docs/api.md, "Cost controls").

The plan was shrunk to fit `max_total_tokens` by our estimates; this holds the line against
what the model reports. A request is sent only if what was reported so far, the estimates of
the requests in flight, its own estimate and what is kept back for the summary all fit the
cap; otherwise it is skipped and the job's results say `partial`.
"""

from __future__ import annotations

import threading


class Spend:
    def __init__(self, cap: int, *, spent: int = 0, reserve: int = 0) -> None:
        self.cap = cap
        self.spent = spent  # as the model reported it
        self.reserve = reserve  # kept for the summary
        self.held = 0  # estimates of the requests in flight
        self.skipped = 0
        self._lock = threading.Lock()

    def take(self, estimate: int) -> bool:
        """Hold `estimate` tokens for a request about to be sent; False (and it is counted as
        skipped) if that would go past the cap."""
        with self._lock:
            if self.spent + self.held + estimate + self.reserve > self.cap:
                self.skipped += 1
                return False
            self.held += estimate
            return True

    def paid(self, estimate: int, reported: int) -> None:
        """A request held with `estimate` came back having cost `reported` tokens."""
        with self._lock:
            self.held -= estimate
            self.spent += reported

    def affords(self, tokens: int) -> bool:
        """Whether `tokens` more (the summary's, say) still fit."""
        with self._lock:
            return self.spent + self.held + tokens <= self.cap
