"""Per-key request rate limit, shared by every API process through Redis (fixed windows)."""

from __future__ import annotations

import logging
import time
import uuid

import redis.asyncio as redis

from scenecap.core.errors import RateLimited

log = logging.getLogger(__name__)


class RateLimiter:
    """At most `limit` requests per key in each `window`-second window."""

    def __init__(self, redis_url: str, limit: int, window: int = 60) -> None:
        self.client = redis.Redis.from_url(redis_url, socket_timeout=1, socket_connect_timeout=1)
        self.limit = limit
        self.window = window

    async def hit(self, key_id: uuid.UUID) -> None:
        """Count one request; raise RateLimited (429 + Retry-After) past the limit."""
        now = time.time()
        window = int(now // self.window)
        name = f"scenecap:rate:{key_id}:{window}"
        try:
            async with self.client.pipeline() as pipe:
                pipe.incr(name)
                pipe.expire(name, self.window * 2)
                count, _expiry_set = await pipe.execute()
        except (redis.RedisError, OSError):
            # Failing open: an unavailable limiter must not take the whole API down.
            log.warning("rate limiter unavailable; request allowed")
            return
        if count > self.limit:
            retry_after = max(1, int((window + 1) * self.window - now) + 1)
            raise RateLimited(
                f"more than {self.limit} requests in {self.window} s for this key",
                {"limit": self.limit, "window_seconds": self.window, "retry_after": retry_after},
            )

    async def aclose(self) -> None:
        await self.client.aclose()
