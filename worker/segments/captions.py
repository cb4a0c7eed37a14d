"""Caption a batch of segments: decode their frames at the size the context allows, send one
request per segment through the caption loop, store each segment as soon as it is answered.

Stored segments are never sent again: a retried batch captions only what is missing, and the
transaction that stores a job's last segment queues its summary (flow.segment_stored).
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import uuid
from collections import Counter, defaultdict
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from db import jobs, work
from db import spend as spend_ledger
from db.models import JobSegment
from db.spend import Spent
from scenecap.core.enums import JobStage
from scenecap.core.errors import MediaUnreadable
from scenecap.core.media import MAX_FRAMES_PER_SEGMENT
from scenecap.store import paths
from worker.job.budget import Spend, request_shape, segment_cost, summary_cost
from worker.job.captions import CaptionLoop, answer_columns
from worker.job.progress import ProgressReporter
from worker.job.spec import JobSpec
from worker.pipeline.extract import FRAMES, ExtractedFrame, ExtractOptions, extract_frames
from worker.pipeline.plan import PlannedFrame
from worker.pipeline.probe import Timeline
from worker.pipeline.sandbox import SandboxLimits, Send, run_sandboxed
from worker.runtime import Runtime
from worker.segments.chunks import stored_transcript
from worker.segments.flow import segment_stored, segments_total
from worker.vision.base import FrameCaption, FrameImage, SegmentFrames, TooManyImages

log = logging.getLogger(__name__)
T = TypeVar("T")

# A segment's frames are numbered index * SLOTS + n in the extraction plan.
SLOTS = MAX_FRAMES_PER_SEGMENT


def caption_batch(
    spec: JobSpec,
    first: int,
    last: int,
    media: Path,
    timeline: Timeline | None,
    rt: Runtime,
    progress: ProgressReporter,
) -> None:
    """Caption the batch's segments not stored yet."""
    with rt.session_factory() as session:
        batch = work.segments_of(session, spec.id, first, last)
    todo = [segment for segment in batch if segment.captioned_at is None]
    if not todo:
        return
    settings = rt.settings
    count, pixels = request_shape(spec, settings)
    transcript = stored_transcript(rt, spec.id) if spec.wants_transcript else None
    heard = {s.index: transcript.heard(s.start, s.end) if transcript else "" for s in todo}
    planned = [
        PlannedFrame(segment.index * SLOTS + n, time, segment.start, segment.end)
        for segment in todo
        for n, time in enumerate(_evenly(segment.planned_times, count))
    ]
    options = dataclasses.replace(ExtractOptions.of(settings), max_pixels=pixels)

    def extract(send: Send) -> None:  # in the sandbox: each frame is sent as it is ready
        for frame in extract_frames(media, planned, options, timeline):
            send([frame])

    spend, each = None, 0
    if spec.token_cap is not None:  # each request held against the job's cap
        total = segments_total(rt, spec.id)
        each = segment_cost(settings, spec.metadata_types, count, pixels, heard=bool(transcript))
        spend = Spend(spec.id, reserve=sum(summary_cost(settings, total, heard=bool(transcript))))
    progress.stage(JobStage.CAPTIONING)
    counts = Counter(p.index // SLOTS for p in planned)
    rt.run(caption_segments(rt, spec, todo, counts, extract, progress, heard, spend, each))


async def caption_segments(
    rt: Runtime,
    spec: JobSpec,
    todo: list[JobSegment],
    counts: Counter[int],
    extract: Callable[[Send], None],
    progress: ProgressReporter,
    heard: dict[int, str] | None = None,
    spend: Spend | None = None,
    each: int = 0,
) -> None:
    """Caption each segment through the caption loop as soon as its frames are decoded,
    while later ones still are. With `spend`, a segment whose request (held at `each`
    tokens) would pass the job's max_total_tokens is stored as left out instead."""
    loop = asyncio.get_running_loop()
    captions = CaptionLoop(rt, progress, spend)
    request = spec.caption_request
    arrived: dict[int, list[ExtractedFrame]] = defaultdict(list)
    started: list[asyncio.Task[None]] = []
    by_index = {segment.index: segment for segment in todo}

    def caption_one(segment: JobSegment, frames: list[ExtractedFrame]) -> Coroutine[Any, Any, None]:
        said = (heard or {}).get(segment.index, "")

        async def ask() -> FrameCaption:
            nonlocal frames
            while True:
                images = [
                    FrameImage(f.planned.index, f.timestamp, f.jpeg, f.width, f.height)
                    for f in frames
                ]
                framed = SegmentFrames(segment.index, segment.start, segment.end, images, said)
                try:
                    return await rt.backend.caption_segment(framed, request)
                except TooManyImages as refused:  # fewer frames (of the same size) will fit
                    await asyncio.to_thread(_lower_cap, rt, spec.id, refused.limit)
                    frames = _evenly(frames, refused.limit)

        def store(answer: FrameCaption, seconds: float) -> bool:
            return _store(rt, spec, segment, progress, Answered(frames, answer, seconds))

        return captions.caption(
            each if spend is not None else 0,
            ask,
            store,
            leave_out=lambda: _store(rt, spec, segment, progress),
        )

    def decoded(frames: list[ExtractedFrame]) -> None:  # on the loop, in decoding order
        for frame in frames:
            index = frame.planned.index // SLOTS
            arrived[index].append(frame)
            if len(arrived[index]) == counts[index]:
                started.append(loop.create_task(caption_one(by_index[index], arrived[index])))

    def hand_over(frames: list[ExtractedFrame]) -> None:  # on the thread reading the sandbox
        loop.call_soon_threadsafe(decoded, frames)

    limits = SandboxLimits.of(rt.settings)
    try:
        await asyncio.to_thread(
            lambda: run_sandboxed(extract, limits, on_message=hand_over, messages=FRAMES)
        )
    except Exception as exc:  # the segments decoded so far are still captioned and kept
        captions.stop(exc)
    await asyncio.gather(*started)
    if len(started) < len(todo):
        captions.stop(MediaUnreadable("a segment's frames could not all be decoded"))
    captions.raise_if_stopped()


@dataclass(frozen=True)
class Answered:
    frames: list[ExtractedFrame]
    answer: FrameCaption
    seconds: float


def _store(
    rt: Runtime,
    spec: JobSpec,
    segment: JobSegment,
    progress: ProgressReporter,
    answered: Answered | None = None,
) -> bool:
    """Store a captioned segment (its thumbnail first) and what it cost in the key's ledger,
    or one skipped for the budget (`answered` None); the last one stored queues the summary.
    Returns False if the job is no longer running."""
    job_id = spec.id
    thumbnail = paths.thumbnail(job_id, segment.index)
    if answered is not None:
        frames = answered.frames
        rt.store.put(thumbnail, frames[len(frames) // 2].thumbnail)
    with rt.session_factory.begin() as session:
        if answered is None:
            fresh = work.skip_segment(session, job_id, segment.index)
        else:
            answer = answered.answer
            used = answer.usage
            cost = Spent(used.prompt_tokens, used.completion_tokens, len(frames), segments=1)
            spend_ledger.record(session, spec.api_key_id, cost)
            fresh = work.store_segment(
                session,
                job_id,
                segment.index,
                frame_times=[f.timestamp for f in answered.frames],
                segment_metadata=answer.metadata,
                **answer_columns(answer, answered.seconds),
            )
        gone = not fresh and not jobs.exists(session, job_id)
        share = segment_stored(session, job_id, rt) if fresh else None
    if gone:  # purged meanwhile: nothing of the job may remain
        rt.store.delete_prefix(thumbnail)
        return False
    return share is None or progress.update(JobStage.CAPTIONING, share)


def _lower_cap(rt: Runtime, job_id: uuid.UUID, limit: int) -> None:
    with rt.session_factory.begin() as session:
        if work.lower_image_cap(session, job_id, limit):
            log.warning(
                "job %s: the vision model takes at most %d image(s) a request; segments are "
                "sent with that many frames (vLLM: start it with --limit-mm-per-prompt)",
                job_id,
                limit,
            )


def _evenly(items: list[T], count: int) -> list[T]:
    """At most count of the items, spread over all of them, in order."""
    if len(items) <= count:
        return list(items)
    step = len(items) / count
    return [items[int(step * (i + 0.5))] for i in range(count)]
