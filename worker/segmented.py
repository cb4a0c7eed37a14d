"""Segment mode (docs/architecture.md, "Long videos"): a job planned into work items that any
worker may take, and the steps that are not captioning: scene chunks, and the summary.

Nothing waits for anything. The job's task probes the media and plans (or hands scene
detection to chunk tasks); the transaction that stores the last chunk plans the segments, and
the one that stores the last segment queues the summary: a counter on the job's row, which
the UPDATE locks, says which is last.
"""

from __future__ import annotations

import logging
import uuid
from typing import TYPE_CHECKING

from sqlalchemy.orm import Session

from db import jobs, work
from db.work import ItemKind
from scenecap.core.enums import JobStage
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
from worker.vision.base import CaptionedSegment

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
    if spec.use_scenes and info.duration > 0:
        chunks = chunk_bounds(info.timeline, settings.scene_chunk_seconds)
        progress.stage(JobStage.DETECTING_SCENES)
        items = [
            {"kind": ItemKind.SCENES, "first": n, "last": n, "start": start, "end": end}
            for n, (start, end) in enumerate(chunks)
        ]
        with rt.session_factory.begin() as session:
            work.set_totals(session, spec.id, chunks_total=len(items), chunks_done=0)
            work.add_items(session, spec.id, items, settings.job_lease_seconds)
            jobs.hand_over(session, spec.id)
        log.info("job %s: scene detection in %d chunks", spec.id, len(items))
        return
    plan = _plan(spec, info.duration, settings)
    with rt.session_factory.begin() as session:
        dispatch_segments(session, spec.id, plan, settings)
        jobs.hand_over(session, spec.id)


def _plan(
    spec: JobSpec, duration: float, settings: Settings, scenes: list[Scene] | None = None
) -> SegmentPlan:
    assert spec.segment_seconds is not None
    return plan_segments(
        duration,
        spec.segment_seconds,
        spec.frames_per_segment,
        max_segments=settings.max_segments,
        min_gap=settings.min_frame_gap_seconds,
        scenes=scenes,
    )


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
    """Score one chunk's frames; the chunk stored last stitches them all and plans."""
    settings = rt.settings
    progress.stage(JobStage.DETECTING_SCENES)
    last = item.end is None or item.end >= duration
    scores = run_sandboxed(
        lambda _send: score_frames(media, item.start or 0.0, None if last else item.end),
        SandboxLimits.of(settings),
        codec=FRAME_SCORES,
    )
    with rt.session_factory.begin() as session:
        if not work.finish_item(session, spec.id, item.index, FRAME_SCORES.pack(scores)):
            return  # another task finished this chunk already
        done, total = work.count_done(session, spec.id, "chunks")
        if done < total:
            fraction = done / total
        else:
            parts = [FRAME_SCORES.unpack(blob) for blob in work.chunk_results(session, spec.id)]
            cuts = cuts_from_scores(
                parts, detector=settings.scene_detector, threshold=settings.scene_threshold
            )
            scenes = scenes_from_cuts(cuts, duration)
            dispatch_segments(session, spec.id, _plan(spec, duration, settings, scenes), settings)
            log.info("job %s: %d scenes from %d chunks", spec.id, len(scenes), total)
            fraction = 1.0
    progress.stage(JobStage.DETECTING_SCENES, fraction)


def summarise(spec: JobSpec, rt: Runtime, progress: ProgressReporter) -> None:
    """Chapters from the segments' captions, a description from the chapters; complete the job."""
    progress.stage(JobStage.SUMMARIZING)
    with rt.session_factory() as session:
        job = jobs.get_job(session, spec.id)
        rows = work.segments_of(session, spec.id)
        assert job is not None
        media_info, length = dict(job.media_info or {}), job.segment_length
    segments = [
        CaptionedSegment(
            r.index,
            r.start,
            r.end,
            r.caption or "",
            r.segment_metadata or {},
            r.details or {},
            tuple(r.frame_times or ()),
        )
        for r in rows
    ]
    request = spec.caption_request
    chapters, chapter_usage = rt.run(rt.backend.chapters(segments, request))
    progress.stage(JobStage.SUMMARIZING, 0.5)
    description, description_usage = rt.run(rt.backend.describe(chapters, request, media_info))
    progress.stage(JobStage.SUMMARIZING, 1.0)
    results = build_segment_results(
        segments,
        chapters,
        metadata_types=spec.metadata_types,
        description=description,
        segment_seconds=length or spec.segment_seconds or 0.0,
        unparsed={r.index for r in rows if not r.parsed},
    )
    summary = chapter_usage + description_usage
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
    progress.finish()
    complete(rt, spec.id, results, usage)
