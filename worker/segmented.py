"""Segment mode (docs/architecture.md, "Long videos"): a job planned into work items that any
worker may take, and the steps that are not captioning: scene chunks, and the summary.

Nothing waits for anything. The job's task probes the media and plans (or hands scene
detection to chunk tasks); the transaction that stores the last chunk plans the segments, and
the one that stores the last segment queues the summary: a counter on the job's row, which
the UPDATE locks, says which is last.
"""

from __future__ import annotations

import json
import logging
import math
import uuid
from typing import TYPE_CHECKING, Any

from sqlalchemy.orm import Session

from db import jobs, work
from db.spend import Spent
from db.work import ItemKind
from scenecap.core.enums import JobStage
from scenecap.core.errors import BudgetTooSmall
from scenecap.core.settings import Settings
from scenecap.store import paths
from worker.outcome import complete
from worker.pipeline.merge import build_segment_results
from worker.pipeline.plan import Scene
from worker.pipeline.probe import MEDIA_INFO, MediaInfo
from worker.pipeline.sandbox import SandboxLimits, run_sandboxed
from worker.pipeline.scenes import (
    FRAME_SCORES,
    chunk_bounds,
    cuts_from_scores,
    scenes_from_cuts,
    score_frames,
)
from worker.pipeline.segments import SegmentPlan, plan_segments
from worker.progress import ProgressReporter
from worker.runtime import Runtime
from worker.segment_budget import frames_that_fit, segment_cost, segments_within, summary_cost
from worker.speech.transcribe import joined, speech_backend, speech_lines, transcribe_chunk
from worker.speech.transcript import ChunkSpan, Transcript, chunk_spans
from worker.spend import Spend, reserved_spec
from worker.vision.base import CaptionedSegment, Usage
from worker.vision.local import chapters_by_labels

if TYPE_CHECKING:
    from pathlib import Path

    from worker.spec import ItemSpec, JobSpec

log = logging.getLogger(__name__)


def start_segments(spec: JobSpec, info: MediaInfo, rt: Runtime, progress: ProgressReporter) -> None:
    """After the probe: plan the segments, or first split scene detection into chunks; hand
    the job over to its work items."""
    settings = rt.settings
    # Segment tasks read the timeline from here rather than demux the video again.
    rt.store.put(paths.probe(spec.id), MEDIA_INFO.pack(info))
    # Scenes and speech first, in chunks; the last chunk done plans the segments.
    items: list[dict[str, Any]] = []
    if spec.use_scenes and info.duration > 0:
        chunks = chunk_bounds(info.timeline, settings.scene_chunk_seconds)
        progress.stage(JobStage.DETECTING_SCENES)
        items += [
            {"kind": ItemKind.SCENES, "first": n, "last": n, "start": start, "end": end}
            for n, (start, end) in enumerate(chunks)
        ]
    if spec.wants_transcript and info.has_audio:
        if not items:
            progress.stage(JobStage.TRANSCRIBING)
        items += [
            {
                "kind": ItemKind.SPEECH,
                "first": span.index,
                "last": span.index,
                "start": span.start,
                "end": None if math.isinf(span.end) else span.end,
            }
            for span in chunk_spans(info.duration, settings.asr_chunk_seconds)
        ]
    if items:
        with rt.session_factory.begin() as session:
            work.set_totals(session, spec.id, chunks_total=len(items), chunks_done=0)
            work.add_items(session, spec.id, items, settings.job_lease_seconds)
            jobs.hand_over(session, spec.id)
        log.info("job %s: scenes and speech in %d chunks", spec.id, len(items))
        return
    # The job shows what it now waits for, not the download it has finished.
    progress.stage(JobStage.CAPTIONING)
    with rt.session_factory.begin() as session:
        plan = _plan(session, spec, info.duration, settings)
        dispatch_segments(session, spec.id, plan, settings)
        jobs.hand_over(session, spec.id)


def _plan(
    session: Session,
    spec: JobSpec,
    duration: float,
    settings: Settings,
    scenes: list[Scene] | None = None,
) -> SegmentPlan:
    """The segments, within the job's max_total_tokens; under a quota, the job then reserves
    the plan's estimate, and a plan the quota cannot hold widens its segments to fit."""
    plan = _plan_within(spec, duration, settings, scenes, spec.max_total_tokens)
    if spec.under_quota:
        wanted = _plan_cost(spec, settings, len(plan.segments))
        spec = reserved_spec(session, spec, wanted, _plan_cost(spec, settings, 1))
        if spec.tokens_reserved is not None and spec.tokens_reserved < wanted:
            plan = _plan_within(spec, duration, settings, scenes, spec.token_cap)
    return plan


def _plan_within(
    spec: JobSpec,
    duration: float,
    settings: Settings,
    scenes: list[Scene] | None,
    cap: int | None,
) -> SegmentPlan:
    assert spec.segment_seconds is not None
    return plan_segments(
        duration,
        spec.segment_seconds,
        spec.frames_per_segment,
        max_segments=_most_segments(spec, settings, cap),
        min_gap=settings.min_frame_gap_seconds,
        scenes=scenes,
    )


def _request_shape(spec: JobSpec, settings: Settings) -> tuple[int, int]:
    """How many frames each segment's request carries, and their pixels."""
    wanted = min(spec.frames_per_segment, settings.vlm_max_images_per_request)
    return frames_that_fit(settings, spec.metadata_types, wanted, heard=spec.wants_transcript)


def _plan_cost(spec: JobSpec, settings: Settings, segments: int) -> int:
    """The most `segments` segments and their summary cost, by our estimates."""
    heard = spec.wants_transcript
    count, pixels = _request_shape(spec, settings)
    each = segment_cost(settings, spec.metadata_types, count, pixels, heard=heard)
    return segments * each + sum(summary_cost(settings, segments, heard=heard))


def _most_segments(spec: JobSpec, settings: Settings, cap: int | None) -> int:
    """MAX_SEGMENTS, or fewer if `cap` tokens afford fewer (the segments then widen, as at
    MAX_SEGMENTS)."""
    if cap is None:
        return settings.max_segments
    count, pixels = _request_shape(spec, settings)
    most = segments_within(
        settings, cap, spec.metadata_types, count, pixels, heard=spec.wants_transcript
    )
    if most < 1:
        raise BudgetTooSmall(f"{cap} tokens do not fit one segment and its summary")
    return min(settings.max_segments, most)


def dispatch_segments(
    session: Session, job_id: uuid.UUID, plan: SegmentPlan, settings: Settings
) -> None:
    """Store the planned segments and queue them in batches (when the session commits)."""
    work.add_segments(session, job_id, plan.segments)
    work.set_totals(
        session,
        job_id,
        segments_total=len(plan.segments),
        segments_done=0,
        segment_length=plan.segment_seconds,
    )
    size = settings.segments_per_task
    count = len(plan.segments)
    batches = [
        {"kind": ItemKind.SEGMENTS, "first": first, "last": min(first + size, count) - 1}
        for first in range(0, count, size)
    ]
    work.add_items(session, job_id, batches, settings.job_lease_seconds)
    log.info("job %s: %d segments in %d tasks", job_id, len(plan.segments), len(batches))


def detect_chunk(
    spec: JobSpec,
    item: ItemSpec,
    media: Path,
    duration: float,
    rt: Runtime,
    progress: ProgressReporter,
) -> None:
    """Score one chunk's frames for scene detection."""
    progress.stage(JobStage.DETECTING_SCENES)
    last = item.end is None or item.end >= duration
    scores = run_sandboxed(
        lambda _send: score_frames(media, item.start or 0.0, None if last else item.end),
        SandboxLimits.of(rt.settings),
        codec=FRAME_SCORES,
    )
    _chunk_done(spec, item, FRAME_SCORES.pack(scores), duration, rt, progress)


def transcribe_part(
    spec: JobSpec,
    item: ItemSpec,
    media: Path,
    duration: float,
    rt: Runtime,
    progress: ProgressReporter,
) -> None:
    """Transcribe one chunk of the sound."""
    progress.stage(JobStage.TRANSCRIBING)
    span = ChunkSpan(item.first, item.start or 0.0, math.inf if item.end is None else item.end)

    async def transcribed() -> Transcript:
        client = speech_backend(rt.settings)
        try:
            return await transcribe_chunk(media, span, client, SandboxLimits.of(rt.settings))
        finally:
            await client.aclose()

    part = rt.run(transcribed())
    _chunk_done(spec, item, json.dumps(part.dumped()).encode(), duration, rt, progress)


def _chunk_done(
    spec: JobSpec,
    item: ItemSpec,
    result: bytes,
    duration: float,
    rt: Runtime,
    progress: ProgressReporter,
) -> None:
    """Store a chunk's result; the chunk stored last (of scenes and speech) plans the
    segments, following the scenes stitched from every scene chunk."""
    settings = rt.settings
    with rt.session_factory.begin() as session:
        if not work.finish_item(session, spec.id, item.index, result):
            return  # another task finished this chunk already
        done, total = work.count_done(session, spec.id, "chunks")
        if done == total:
            scenes = None
            if spec.use_scenes and duration > 0:
                blobs = work.results_of(session, spec.id, ItemKind.SCENES)
                cuts = cuts_from_scores(
                    [FRAME_SCORES.unpack(blob) for blob in blobs], spec.scenes.detector(settings)
                )
                scenes = scenes_from_cuts(cuts, duration)
                log.info("job %s: %d scenes from %d chunks", spec.id, len(scenes), len(blobs))
            plan = _plan(session, spec, duration, settings, scenes)
            dispatch_segments(session, spec.id, plan, settings)
    stage = JobStage.DETECTING_SCENES if item.kind == ItemKind.SCENES else JobStage.TRANSCRIBING
    progress.stage(stage, done / total)


def stored_transcript(rt: Runtime, job_id: uuid.UUID) -> Transcript:
    """The job's transcript, from its speech chunks' results."""
    with rt.session_factory() as session:
        blobs = work.results_of(session, job_id, ItemKind.SPEECH)
    return joined([Transcript.of(json.loads(blob)) for blob in blobs if blob])


def summarise(spec: JobSpec, rt: Runtime, progress: ProgressReporter) -> None:
    """Chapters from the segments' captions, a description from the chapters; complete the job."""
    progress.stage(JobStage.SUMMARIZING)
    with rt.session_factory() as session:
        job = jobs.get_job(session, spec.id)
        rows = work.captioned_segments(session, spec.id)
        assert job is not None
        media_info, length = dict(job.media_info or {}), job.segment_length
    partial = len(rows) < job.segments_total  # some were left out for the budget
    transcript = stored_transcript(rt, spec.id) if spec.wants_transcript else None
    segments = [
        CaptionedSegment(
            r.index,
            r.start,
            r.end,
            r.caption or "",
            r.segment_metadata or {},
            r.details or {},
            tuple(r.frame_times or ()),
            transcript.heard(r.start, r.end) if transcript else "",
        )
        for r in rows
    ]
    request = spec.caption_request
    said = speech_lines(transcript) if transcript else ""
    cost = sum(summary_cost(rt.settings, len(segments), heard=transcript is not None))
    if spec.token_cap is not None and not Spend(spec.id, cost).summary_fits(rt):
        # No room left to summarise with the model: chapters where the labels change.
        chapters, summary, description, partial = chapters_by_labels(segments), Usage(), "", True
    else:
        chapters, summary = rt.run(rt.backend.chapters(segments, request))
        progress.stage(JobStage.SUMMARIZING, 0.5)
        description, described = rt.run(rt.backend.describe(chapters, request, media_info, said))
        summary = summary + described
    progress.stage(JobStage.SUMMARIZING, 1.0)
    results = build_segment_results(
        segments,
        chapters,
        metadata_types=spec.metadata_types,
        description=description,
        segment_seconds=length or spec.segment_seconds or 0.0,
        unparsed={r.index for r in rows if not r.parsed},
    )
    if partial:
        results["partial"] = True
    prompt = sum(r.prompt_tokens for r in rows) + summary.prompt_tokens
    answer = sum(r.completion_tokens for r in rows) + summary.completion_tokens
    usage = {
        "frames": sum(len(r.frame_times or ()) for r in rows),
        "segments": len(rows),
        "model": rt.backend.model_name(request),
        "prompt_tokens": prompt,
        "completion_tokens": answer,
        "total_tokens": prompt + answer,
    }
    heard = round(transcript.audio_seconds, 3) if transcript is not None else 0.0
    unrecorded = Spent(summary.prompt_tokens, summary.completion_tokens, audio_seconds=heard)
    if transcript is not None:
        results["transcript"] = transcript.as_result()
        usage["audio_seconds"] = heard
    progress.finish()
    complete(rt, spec, results, usage, unrecorded)
