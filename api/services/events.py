"""Server-Sent Events for one job: `progress` while it runs, then one terminal event.

One poller per job per process reads the job's state (one statement on the event loop, no
thread) a few times a second, however many streams follow it; each stream sends only the
changes, a comment line now and then so proxies keep the connection, and ends after
STREAM_MAX_SECONDS at the latest (EventSource reconnects by itself). Streams are capped per
job and per key (MAX_STREAMS_PER_JOB, MAX_STREAMS_PER_KEY): past either, 429.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from starlette.responses import StreamingResponse
from starlette.types import Receive, Scope, Send

from db import views
from db.reads import Reads
from scenecap.core.enums import JobStatus
from scenecap.core.errors import ScenecapError, TooManyStreams

POLL_SECONDS = 0.25
KEEPALIVE_SECONDS = 15.0
TERMINAL_EVENTS = {
    JobStatus.COMPLETED: "completed",
    JobStatus.FAILED: "failed",
    JobStatus.CANCELLED: "cancelled",
}


@dataclass(frozen=True)
class State:
    status: JobStatus
    stage: str
    percent_complete: int


def format_event(event: str, data: dict[str, Any]) -> str:
    return f"event: {event}\ndata: {json.dumps(data, separators=(',', ':'))}\n\n"


class _Watch:
    """The one poller of a job in this process, and the streams it feeds."""

    def __init__(self) -> None:
        self.state: State | None = None
        self.gone = False
        self.streams = 0
        self.changed = asyncio.Condition()
        self.task: asyncio.Task[None] | None = None


class Watchers:
    """This process's pollers, one per followed job, and the stream counts per job and key."""

    def __init__(self, reads: Reads, *, per_job: int, per_key: int) -> None:
        self.reads = reads
        self.per_job = per_job
        self.per_key = per_key
        self._watches: dict[uuid.UUID, _Watch] = {}
        self._per_key: Counter[uuid.UUID] = Counter()

    def open(self, job_id: uuid.UUID, key_id: uuid.UUID) -> Callable[[], None]:
        """Count one more stream of the job (429 past a cap); returns its release."""
        watch = self._watches.get(job_id)
        if watch is not None and watch.streams >= self.per_job:
            raise TooManyStreams(
                f"this job already has {self.per_job} open event streams",
                {"limit": self.per_job, "retry_after": 10},
            )
        if self._per_key[key_id] >= self.per_key:
            raise TooManyStreams(
                f"this key's jobs already have {self.per_key} open event streams",
                {"limit": self.per_key, "retry_after": 10},
            )
        if watch is None:
            watch = self._watches[job_id] = _Watch()
            watch.task = asyncio.get_running_loop().create_task(self._poll(job_id, watch))
        watch.streams += 1
        self._per_key[key_id] += 1
        released = False

        def release() -> None:
            nonlocal released
            if released:
                return
            released = True
            watch.streams -= 1
            self._per_key[key_id] -= 1
            if not self._per_key[key_id]:
                del self._per_key[key_id]
            if not watch.streams and self._watches.get(job_id) is watch:
                del self._watches[job_id]
                if watch.task is not None:
                    watch.task.cancel()

        return release

    def watch_of(self, job_id: uuid.UUID) -> _Watch:
        return self._watches[job_id]

    async def _poll(self, job_id: uuid.UUID, watch: _Watch) -> None:
        while True:
            try:
                row = await views.job_state(self.reads, job_id)
            except ScenecapError:  # the database is unavailable: the streams wait for it
                await asyncio.sleep(POLL_SECONDS * 4)
                continue
            state = (
                State(JobStatus(row["status"]), row["stage"], row["percent_complete"])
                if row
                else None
            )
            async with watch.changed:
                watch.gone = state is None
                if state != watch.state or watch.gone:
                    watch.state = state
                    watch.changed.notify_all()
            if watch.gone or (state is not None and state.status in TERMINAL_EVENTS):
                return
            await asyncio.sleep(POLL_SECONDS)  # the polling interval, shared by every stream


async def job_events(
    watch: _Watch,
    job_id: uuid.UUID,
    final: Callable[[], Awaitable[dict[str, Any]]],
    *,
    max_seconds: float,
) -> AsyncIterator[str]:
    """Yield SSE messages until the job is terminal (the first message comes at once), it is
    gone, or max_seconds have passed."""
    yield f"retry: {int(POLL_SECONDS * 4000)}\n\n"
    ends = time.monotonic() + max_seconds
    last: State | None = None
    while time.monotonic() < ends:
        async with watch.changed:
            if watch.state == last and not watch.gone:
                wait = min(KEEPALIVE_SECONDS, max(0.0, ends - time.monotonic()))
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(watch.changed.wait(), wait)
            state, gone = watch.state, watch.gone
        if gone:  # deleted meanwhile: nothing more will happen to it
            return
        if state is None or state == last:
            yield ": keep-alive\n\n"
            continue
        last = state
        yield format_event(
            "progress",
            {
                "job_id": str(job_id),
                "status": state.status.value,
                "stage": state.stage,
                "percent_complete": state.percent_complete,
            },
        )
        if state.status in TERMINAL_EVENTS:
            yield format_event(TERMINAL_EVENTS[state.status], await final())
            return


class EventStream(StreamingResponse):
    """An SSE response that gives its stream's slot back however the stream ends."""

    def __init__(self, content: AsyncIterator[str], release: Callable[[], None]) -> None:
        super().__init__(
            content,
            media_type="text/event-stream",
            headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
        )
        self.release = release

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await super().__call__(scope, receive, send)
        finally:
            self.release()
