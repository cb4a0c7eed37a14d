"""Frame mode's captioning: every extracted frame through the caption loop, each stored with
its thumbnail the moment it is answered."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Awaitable
from functools import partial

from db import frames as frame_repo
from db import spend
from db.spend import Spent
from scenecap.core.enums import JobStage
from scenecap.store import paths
from worker.job.budget import Spend
from worker.job.captions import CaptionLoop, answer_columns
from worker.job.progress import ProgressReporter
from worker.pipeline.extract import ExtractedFrame
from worker.runtime import Runtime
from worker.speech.transcript import Transcript
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
    """Caption frames through the caption loop; store each as soon as it is answered.
    Returns how many were left out because `spend`, the job's budget, would not cover them."""
    loop = CaptionLoop(rt, progress, spend)
    finished = done

    def store(frame: ExtractedFrame, answer: FrameCaption, seconds: float) -> bool:
        nonlocal finished
        if not _store_frame(rt, job_id, key_id, frame, answer, seconds):
            return False  # the job was purged meanwhile
        finished += 1
        return progress.update(JobStage.CAPTIONING, finished / total)

    def caption_one(frame: ExtractedFrame) -> Awaitable[None]:
        heard = transcript.heard(frame.timestamp, frame.timestamp) if transcript else ""
        image = FrameImage(
            frame.planned.index, frame.timestamp, frame.jpeg, frame.width, frame.height, heard
        )
        held = per_frame_text + image_tokens(frame.width, frame.height) if spend else 0
        return loop.caption(held, lambda: rt.backend.caption(image, request), partial(store, frame))

    await asyncio.gather(*(caption_one(frame) for frame in extracted))
    loop.raise_if_stopped()
    return loop.left_out


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
            frame_metadata=answer.metadata,
            **answer_columns(answer, seconds),
        )
    if not stored:
        rt.store.delete_prefix(thumbnail)
    return stored
