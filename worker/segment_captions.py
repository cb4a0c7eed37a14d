"""Caption a batch of segments: decode their frames at the size the context allows, send one
request per segment, store each segment as soon as it is answered.

Stored segments are never sent again: a retried batch captions only what is missing, and the
transaction that stores a job's last segment queues its summary.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import time
import uuid
from collections import Counter, defaultdict
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, TypeVar

from db import work
from db.models import JobSegment
from db.work import ItemKind
from scenecap.core.enums import JobStage
from scenecap.core.errors import JobCancelled, MediaUnreadable, VisionBackendUnavailable
from scenecap.core.settings import Settings
from scenecap.store import paths
from worker.pipeline.extract import FRAMES, ExtractedFrame, ExtractOptions, extract_frames
from worker.pipeline.plan import PlannedFrame
from worker.pipeline.probe import Timeline
from worker.pipeline.sandbox import SandboxLimits, Send, run_sandboxed
from worker.progress import ProgressReporter
from worker.runtime import Runtime
from worker.segmented import stored_transcript
from worker.vision.base import FrameCaption, FrameImage, SegmentFrames, TooManyImages
from worker.vision.budget import pixels_per_image, text_tokens
from worker.vision.prompt import HEARD_MAX_CHARS, SYSTEM_PROMPT, segment_texts

if TYPE_CHECKING:
    from worker.spec import JobSpec

log = logging.getLogger(__name__)
T = TypeVar("T")

# A segment's frames are numbered index * SLOTS + n in the extraction plan (at most 16 each).
SLOTS = 16


def segment_pixels(
    settings: Settings, metadata_types: tuple[str, ...], frames: int, *, heard: bool = False
) -> int:
    """The most pixels each of a segment's frames may have so its request fits the context
    (0 if even the smallest would not). Texts are measured at their longest: times of five
    digits, and the most speech a request carries when the job has a transcript."""
    speech = "x" * HEARD_MAX_CHARS if heard else ""
    opening, labels, instructions = segment_texts(
        metadata_types, 99999.99, 99999.99, [99999.99] * frames, speech
    )
    return pixels_per_image(
        settings.vlm_context_tokens,
        text=text_tokens(SYSTEM_PROMPT, opening, *labels, instructions),
        max_tokens=settings.caption_max_tokens,
        images=frames,
        ceiling=settings.max_pixels,
    )


def frames_that_fit(
    settings: Settings, metadata_types: tuple[str, ...], wanted: int, *, heard: bool = False
) -> tuple[int, int]:
    """How many frames a segment request can carry (at most `wanted`), and their pixels."""
    for count in range(wanted, 0, -1):
        pixels = segment_pixels(settings, metadata_types, count, heard=heard)
        if pixels:
            return count, pixels
    raise VisionBackendUnavailable(
        "VLM_CONTEXT_TOKENS cannot hold one frame with the caption prompt and CAPTION_MAX_TOKENS"
    )


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
    cap = min(
        spec.image_cap or settings.vlm_max_images_per_request, settings.vlm_max_images_per_request
    )
    wanted = min(spec.frames_per_segment, cap)
    count, pixels = frames_that_fit(
        settings, spec.metadata_types, wanted, heard=spec.wants_transcript
    )
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

    progress.stage(JobStage.CAPTIONING)
    counts = Counter(p.index // SLOTS for p in planned)
    rt.run(caption_segments(rt, spec, todo, counts, extract, progress, heard))


async def caption_segments(
    rt: Runtime,
    spec: JobSpec,
    todo: list[JobSegment],
    counts: Counter[int],
    extract: Callable[[Send], None],
    progress: ProgressReporter,
    heard: dict[int, str] | None = None,
) -> None:
    """Caption each segment as soon as its frames are decoded, while later ones still are;
    concurrently (bounded) and, like frames, never cutting off a request in flight."""
    loop = asyncio.get_running_loop()
    limit = asyncio.Semaphore(rt.backend.max_concurrency)
    request = spec.caption_request
    stopped: list[BaseException] = []
    arrived: dict[int, list[ExtractedFrame]] = defaultdict(list)
    captions: list[asyncio.Task[None]] = []
    by_index = {segment.index: segment for segment in todo}

    async def caption_one(segment: JobSegment, frames: list[ExtractedFrame]) -> None:
        async with limit:
            if stopped:
                return
            if not await asyncio.to_thread(progress.still_running):
                stopped.append(JobCancelled("the job was cancelled"))
                return
            started = time.perf_counter()
            while True:
                images = [
                    FrameImage(f.planned.index, f.timestamp, f.jpeg, f.width, f.height)
                    for f in frames
                ]
                try:
                    said = (heard or {}).get(segment.index, "")
                    answer = await rt.backend.caption_segment(
                        SegmentFrames(segment.index, segment.start, segment.end, images, said),
                        request,
                    )
                    break
                except TooManyImages as refused:  # fewer frames (of the same size) will fit
                    await asyncio.to_thread(_lower_cap, rt, spec.id, refused.limit)
                    frames = _evenly(frames, refused.limit)
                except Exception as exc:  # raised below, once every request in flight is back
                    stopped.append(exc)
                    return
            seconds = time.perf_counter() - started
        running = await asyncio.to_thread(
            _store, rt, spec.id, segment, frames, answer, seconds, progress
        )
        if not running:
            stopped.append(JobCancelled("the job was cancelled"))

    def decoded(frames: list[ExtractedFrame]) -> None:  # on the loop, in decoding order
        for frame in frames:
            index = frame.planned.index // SLOTS
            arrived[index].append(frame)
            if len(arrived[index]) == counts[index]:
                captions.append(loop.create_task(caption_one(by_index[index], arrived[index])))

    def hand_over(frames: list[ExtractedFrame]) -> None:  # on the thread reading the sandbox
        loop.call_soon_threadsafe(decoded, frames)

    limits = SandboxLimits.of(rt.settings)
    try:
        await asyncio.to_thread(
            lambda: run_sandboxed(extract, limits, on_message=hand_over, messages=FRAMES)
        )
    except Exception as exc:  # the segments decoded so far are still captioned and kept
        stopped.append(exc)
    await asyncio.gather(*captions)
    if not stopped and len(captions) < len(todo):
        stopped.append(MediaUnreadable("a segment's frames could not all be decoded"))
    if stopped:
        raise next((e for e in stopped if isinstance(e, JobCancelled)), stopped[0])


def _store(
    rt: Runtime,
    job_id: uuid.UUID,
    segment: JobSegment,
    frames: list[ExtractedFrame],
    answer: FrameCaption,
    seconds: float,
    progress: ProgressReporter,
) -> bool:
    """Store a captioned segment (its thumbnail first); the last one queues the summary.
    Returns False if the job is no longer running."""
    rt.store.put(paths.thumbnail(job_id, segment.index), frames[len(frames) // 2].thumbnail)
    with rt.session_factory.begin() as session:
        fresh = work.store_segment(
            session,
            job_id,
            segment.index,
            frame_times=[f.timestamp for f in frames],
            caption=answer.caption,
            segment_metadata=answer.metadata,
            parsed=answer.parsed,
            details=answer.details or None,
            prompt_tokens=answer.usage.prompt_tokens,
            completion_tokens=answer.usage.completion_tokens,
            vision_seconds=seconds,
            vision_retries=answer.retries,
        )
        if not fresh:
            return True
        done, total = work.count_done(session, job_id, "segments")
        if done == total:
            work.add_items(
                session, job_id, [{"kind": ItemKind.SUMMARY}], rt.settings.job_lease_seconds
            )
    return progress.update(JobStage.CAPTIONING, done / total)


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
