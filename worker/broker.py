"""The Redis broker transport, publishing through one client per channel.

kombu's Redis transport builds a new redis-py client for every message it publishes, and
redis-py copies its ~170 response callbacks into each one: about a fifth of the cost of a
publish, which is on the path of every job submitted. The client it makes instead shares the
channel's connection pool, as the per-message ones did; only the object is reused.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from kombu.transport import redis


class Channel(redis.Channel):
    @contextmanager
    def conn_or_acquire(self, client: Any = None) -> Iterator[Any]:
        yield client or self.client


class Transport(redis.Transport):
    Channel = Channel
