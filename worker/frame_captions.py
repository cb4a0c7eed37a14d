"""Frame mode's captioning: frames sent to the model concurrently (bounded), each stored with
its thumbnail the moment it is answered, so a retried job never pays for one twice."""

from __future__ import annotations

import asyncio
import time
import uuid

from db import frames as frame_repo
from db import spend
from db.spend import Spent
from scenecap.core.enums import JobStage
from scenecap.core.errors import JobCancelled
from scenecap.store import paths
from worker.pipeline.extract import ExtractedFrame
from worker.progress import ProgressReporter
from worker.runtime import Runtime
from worker.speech.transcript import Transcript
from worker.spend import Spend
from worker.vision.base import CaptionRequest, FrameCaption, FrameImage
from worker.vision.budget import image_tokens


async def caption_frames(
    rt: Runtime,
    job_id: uuid.UUID,
    key_id: uuid.UUID,
    request: CaptionRequest,
    extracted: list[ExtractedFrame],
    progress: ProgressReporter,
    *,
    done: int,
    total: int,
    transcript: Transcript | None = None,
    spend: Spend | None = None,
    per_frame_text: int = 0,
) -> int:
    """Caption frames concurrently (bounded); store each as soon as it is answered. Returns
    how many were left out because `spend`, the job's budget, would not cover them.

    A cancellation or a failure stops new requests, but never one in flight: it is paid for,
    and a request cut off mid-answer can leave its pooled connection unusable.
    """
    limit = asyncio.Semaphore(rt.backend.max_concurrency)
    stopped: list[BaseException] = []  # why captioning stops: a cancellation, or a failure
    finished, left_out = done, 0

    def store(frame: ExtractedFrame, answer: FrameCaption, seconds: float) -> bool:
        nonlocal finished
        if not _store_frame(rt, job_id, key_id, frame, answer, seconds):
            return False  # the job was purged meanwhile
        finished += 1
        return progress.update(JobStage.CAPTIONING, finished / total)

    async def caption_one(frame: ExtractedFrame) -> None:
        nonlocal left_out
        async with limit:
            if stopped:
                return
            if not await asyncio.to_thread(progress.still_running):
                stopped.append(JobCancelled("the job was cancelled"))
                return
            heard = transcript.heard(frame.timestamp, frame.timestamp) if transcript else ""
            image = FrameImage(
                frame.planned.index, frame.timestamp, frame.jpeg, frame.width, frame.height, heard
            )
            held = per_frame_text + image_tokens(frame.width, frame.height) if spend else 0
            if spend is not None and not await asyncio.to_thread(spend.hold, rt, held):
                left_out += 1
                return
            started = time.perf_counter()
            try:
                answer = await rt.backend.caption(image, request)
            except Exception as exc:  # raised below, once every request in flight is back
                if spend is not None:  # it may have cost something: count what was held
                    await asyncio.to_thread(spend.settle, rt, held, held)
                stopped.append(exc)
                return
            seconds = time.perf_counter() - started
            if spend is not None:  # before the slot frees: the next request sees what it cost
                reported = answer.usage.prompt_tokens + answer.usage.completion_tokens
                await asyncio.to_thread(spend.settle, rt, held, reported)
        if not await asyncio.to_thread(store, frame, answer, seconds):
            stopped.append(JobCancelled("the job was cancelled"))

    await asyncio.gather(*(caption_one(frame) for frame in extracted))
    if stopped:
        # Say one thing: a cancellation first, else the first failure.
        raise next((e for e in stopped if isinstance(e, JobCancelled)), stopped[0])
    return left_out


def _store_frame(
    rt: Runtime,
    job_id: uuid.UUID,
    key_id: uuid.UUID,
    frame: ExtractedFrame,
    answer: FrameCaption,
    seconds: float,
) -> bool:
    """Store a captioned frame, and what it cost in the key's ledger; False if the job was
    purged meanwhile (its thumbnail is then deleted again: nothing of it may remain)."""
    # The thumbnail first: a frame row always has its thumbnail in the store.
    thumbnail = paths.thumbnail(job_id, frame.planned.index)
    rt.store.put(thumbnail, frame.thumbnail)
    used = answer.usage
    with rt.session_factory.begin() as session:
        spend.record(session, key_id, Spent(used.prompt_tokens, used.completion_tokens, frames=1))
        stored = frame_repo.save_frame(
            session,
            job_id,
            index=frame.planned.index,
            timestamp=frame.timestamp,
            planned_timestamp=frame.planned.time,
            scene_start=frame.planned.scene_start,
            scene_end=frame.planned.scene_end,
            caption=answer.caption,
            frame_metadata=answer.metadata,
            parsed=answer.parsed,
            details=answer.details or None,
            prompt_tokens=answer.usage.prompt_tokens,
            completion_tokens=answer.usage.completion_tokens,
            vision_seconds=seconds,
            vision_retries=answer.retries,
        )
    if not stored:
        rt.store.delete_prefix(thumbnail)
    return stored
