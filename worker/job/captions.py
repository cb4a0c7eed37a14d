"""The one caption loop of both modes: requests sent to the model concurrently (bounded by
the backend's concurrency), each held against the job's cap before it is sent and settled
when it is back, each answer stored the moment it comes, so a retried job never pays for one
twice.

A cancellation or a failure stops new requests, but never one in flight: it is paid for,
and a request cut off mid-answer can leave its pooled connection unusable. The loop then
says one thing: a cancellation first, else the first failure.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Any

from scenecap.core.errors import JobCancelled
from worker.job.budget import Spend
from worker.job.progress import ProgressReporter
from worker.runtime import Runtime
from worker.vision.base import FrameCaption

# Each runs on a thread and returns False when the job no longer runs (cancelled, purged).
Store = Callable[[FrameCaption, float], bool]  # an answer, and the seconds it took
LeaveOut = Callable[[], bool]  # a request the cap had no room for


class CaptionLoop:
    def __init__(self, rt: Runtime, progress: ProgressReporter, spend: Spend | None) -> None:
        self._rt, self._progress, self._spend = rt, progress, spend
        self._limit = asyncio.Semaphore(rt.backend.max_concurrency)
        self._stopped: list[BaseException] = []
        self.left_out = 0  # requests not sent for the cap

    def stop(self, why: BaseException) -> None:
        """Stop new requests (those in flight finish); `why` is raised by `raise_if_stopped`."""
        self._stopped.append(why)

    async def caption(
        self,
        held: int,
        ask: Callable[[], Awaitable[FrameCaption]],
        store: Store,
        leave_out: LeaveOut | None = None,
    ) -> None:
        """One request: sent by `ask` unless the loop stopped, the job ended, or its `held`
        tokens would pass the job's cap (then it is counted, and `leave_out` records it)."""
        rt, spend = self._rt, self._spend
        async with self._limit:
            if self._stopped:
                return
            if not await asyncio.to_thread(self._progress.still_running):
                self.stop(JobCancelled("the job was cancelled"))
                return
            if spend is not None and not await asyncio.to_thread(spend.hold, rt, held):
                self.left_out += 1
                if leave_out is not None and not await asyncio.to_thread(leave_out):
                    self.stop(JobCancelled("the job was cancelled"))
                return
            started = time.perf_counter()
            try:
                answer = await ask()
            except Exception as exc:  # raised once every request in flight is back
                if spend is not None:  # it may have cost something: count what was held
                    await asyncio.to_thread(spend.settle, rt, held, held)
                self.stop(exc)
                return
            seconds = time.perf_counter() - started
            if spend is not None:  # before the slot frees: the next request sees what it cost
                reported = answer.usage.prompt_tokens + answer.usage.completion_tokens
                await asyncio.to_thread(spend.settle, rt, held, reported)
        if not await asyncio.to_thread(store, answer, seconds):
            self.stop(JobCancelled("the job was cancelled"))

    def raise_if_stopped(self) -> None:
        if self._stopped:
            raise next((e for e in self._stopped if isinstance(e, JobCancelled)), self._stopped[0])


def answer_columns(answer: FrameCaption, seconds: float) -> dict[str, Any]:
    """What a stored frame or segment keeps of its answer (but its metadata, whose column
    each names its own)."""
    return {
        "caption": answer.caption,
        "parsed": answer.parsed,
        "details": answer.details or None,
        "prompt_tokens": answer.usage.prompt_tokens,
        "completion_tokens": answer.usage.completion_tokens,
        "vision_seconds": seconds,
        "vision_retries": answer.retries,
    }
