"""Who is calling: API keys looked up by hash, kept a moment in each API process.

A lookup costs a database round trip; under load most requests come from few keys, so each
process keeps what it found (and what it did not) for `KEY_CACHE_SECONDS`. That bounds how
long a revoked key keeps working: one such interval, in every process (README, "Keys").
"""

from __future__ import annotations

import time
import uuid
from collections import OrderedDict
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy.orm import Session, sessionmaker
from starlette.concurrency import run_in_threadpool

from db import keys


@dataclass(frozen=True)
class Caller:
    """The API key a request came with (what requests need of it, detached from any session)."""

    id: uuid.UUID
    name: str
    key_hash: str  # signs the key's share links (revoking the key voids them)
    last_used_at: datetime | None
    tokens_per_day: int | None = None  # the key's daily quota (docs/api.md, "Cost controls")


class KeyCache:
    """Keys (and unknown keys) found in the database, each kept `seconds` in this process."""

    def __init__(self, reader: sessionmaker[Session], seconds: float) -> None:
        self.reader = reader  # no transaction: the lookup and its one write stand alone
        self.seconds = seconds
        self.capacity = 10_000
        self._found: OrderedDict[str, tuple[float, Caller | None]] = OrderedDict()

    async def caller(self, plaintext: str) -> Caller | None:
        """The active key this plaintext names, or None. Runs on the event loop only."""
        if not keys.well_formed(plaintext):  # refused without a lookup, nor a cache entry
            return None
        digest = keys.hash_key(plaintext)
        now = time.monotonic()
        cached = self._found.get(digest)
        if cached is not None and now - cached[0] < self.seconds:
            return cached[1]
        caller = await run_in_threadpool(self._look_up, digest)
        self._found[digest] = (now, caller)
        self._found.move_to_end(digest)
        while len(self._found) > self.capacity:
            self._found.popitem(last=False)
        return caller

    def _look_up(self, digest: str) -> Caller | None:
        with self.reader() as session:
            key = keys.find_active_key(session, digest)
            if key is None:
                return None
            keys.mark_used(session, key.id, key.last_used_at)
            return Caller(key.id, key.name, key.key_hash, key.last_used_at, key.tokens_per_day)
