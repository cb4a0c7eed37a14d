"""Request rate limits, shared by every API process through Redis (fixed windows): per API
key, and for share links per token and per client address.

A Redis round trip on every request cost a quarter of a cached GET, so a process counts a
key's requests itself and adds them to the shared count in Redis at most SYNC_SECONDS apart.
Near the limit (within MARGIN of it, and always for small limits) every request is counted
in Redis as it comes, so the limit itself holds exactly; far from it, another process's
requests are seen up to SYNC_SECONDS late.
"""

from __future__ import annotations

import logging
import time
import uuid
from dataclasses import dataclass

import redis.asyncio as redis

from scenecap.core.errors import RateLimited

log = logging.getLogger(__name__)
SYNC_SECONDS = 0.1
MARGIN = 0.1  # of the limit: the part counted request by request
# Limits below this are counted request by request all the way: with a few requests a window,
# another process's requests not yet seen here (up to SYNC_SECONDS of them) would pass it.
EXACT_BELOW = 100


@dataclass
class _Count:
    window: int
    shared: int = 0  # the count in Redis when this process last added to it
    unsent: int = 0  # requests counted here and not added to Redis yet
    synced_at: float = 0.0


class RateLimiter:
    """At most `limit` requests per subject (a key's id, a token's fingerprint, an address)
    in each `window`-second window."""

    def __init__(self, redis_url: str, limit: int, window: int = 60, name: str = "rate") -> None:
        self.client = redis.Redis.from_url(redis_url, socket_timeout=1, socket_connect_timeout=1)
        self.limit = limit
        self.window = window
        self.exact_from = 0 if limit < EXACT_BELOW else limit - max(1, int(limit * MARGIN))
        self.name = name
        self._counts: dict[uuid.UUID | str, _Count] = {}

    async def hit(self, subject: uuid.UUID | str) -> None:
        """Count one request; raise RateLimited (429 + Retry-After) past the limit."""
        now = time.time()
        window = int(now // self.window)
        count = self._counts.get(subject)
        if count is None or count.window != window:
            count = self._counts[subject] = _Count(window)
        count.unsent += 1
        seen = count.shared + count.unsent
        if seen >= self.exact_from or now - count.synced_at >= SYNC_SECONDS:
            seen = await self._add(subject, count, now)
        if seen > self.limit:
            retry_after = max(1, int((window + 1) * self.window - now) + 1)
            whom = "this key" if isinstance(subject, uuid.UUID) else subject.partition(":")[0]
            raise RateLimited(
                f"more than {self.limit} requests in {self.window} s for {whom}",
                {"limit": self.limit, "window_seconds": self.window, "retry_after": retry_after},
            )

    async def _add(self, subject: uuid.UUID | str, count: _Count, now: float) -> int:
        """Add this process's unsent requests to the shared count; return the shared count."""
        name = f"scenecap:{self.name}:{subject}:{count.window}"
        added, count.unsent, count.synced_at = count.unsent, 0, now
        try:
            count.shared = await self.client.incrby(name, added)
            if count.shared == added:  # the window's first: its counter goes when it does
                await self.client.expire(name, self.window * 2)
        except (redis.RedisError, OSError):
            # Failing open: an unavailable limiter must not take the whole API down.
            log.warning("rate limiter unavailable; request allowed")
            return 0
        if len(self._counts) > 10_000:  # keys seen in older windows
            self._counts = {k: c for k, c in self._counts.items() if c.window == count.window}
        return count.shared

    async def aclose(self) -> None:
        await self.client.aclose()
