"""Retrying a model server (vision or speech): which answers are worth another try, and how
long to wait before it."""

from __future__ import annotations

import random

import httpx

# Timeouts, conflicts, rate limits and the server's own failures pass; other answers do not.
RETRY_STATUS = frozenset({408, 409, 425, 429, 500, 502, 503, 504})
MAX_BACKOFF = 30.0


def delay_before(attempt: int, response: httpx.Response | None) -> float:
    """Seconds to wait before attempt `attempt + 1`: the server's Retry-After when it gave
    one, else exponential backoff with full jitter."""
    if response is not None:
        try:
            return min(MAX_BACKOFF, max(0.0, float(response.headers.get("retry-after", ""))))
        except ValueError:
            pass
    return random.uniform(0, min(MAX_BACKOFF, 0.5 * 2**attempt))
