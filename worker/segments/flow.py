"""A segment-mode job's flow (docs/architecture.md, "Long videos"), and the only code that
moves its work-item counters. Any worker may take any of its work items; nothing waits.

    process_job     probe → plan()                                       (worker/run.py)
                    └─ hand over: scene and speech chunks first, if any, else the segments
    chunk items     score a stretch for scenes, or transcribe one          (chunks.py)
                    └─ chunk_done: the last chunk stitches the scenes, plans the segments
    segment items   decode and caption a batch of segments                 (captions.py)
                    └─ segment_stored: the last segment queues the summary
    summary item    chapters, description, COMPLETED                       (summary.py)

"Last" is a counter on the job's row, which each UPDATE locks.
"""

from __future__ import annotations

import logging
import uuid

from sqlalchemy.orm import Session

from db import jobs, work
from db.work import ItemKind
from scenecap.core.enums import JobStage
from scenecap.store import paths
from worker.job.progress import ProgressReporter
from worker.job.spec import ItemSpec, JobSpec
from worker.pipeline.plan import Scene
from worker.pipeline.probe import MEDIA_INFO, MediaInfo
from worker.pipeline.scenes import FRAME_SCORES, cuts_from_scores, scenes_from_cuts
from worker.runtime import Runtime
from worker.segments.plan import batches, chunks, plan_within_cap

log = logging.getLogger(__name__)


def start_segments(spec: JobSpec, info: MediaInfo, rt: Runtime, progress: ProgressReporter) -> None:
    """After the probe: plan the segments, or first split scene detection and speech into
    chunks; hand the job over to its work items."""
    settings = rt.settings
    # Segment tasks read the timeline from here rather than demux the video again.
    rt.store.put(paths.probe(spec.id), MEDIA_INFO.pack(info))
    items = chunks(spec, info, settings)
    if items:
        first = ItemKind(items[0]["kind"])
        progress.stage(
            JobStage.DETECTING_SCENES if first == ItemKind.SCENES else JobStage.TRANSCRIBING
        )
        with rt.session_factory.begin() as session:
            work.set_totals(session, spec.id, chunks_total=len(items), chunks_done=0)
            work.add_items(session, spec.id, items, settings.job_lease_seconds)
            jobs.hand_over(session, spec.id)
        log.info("job %s: scenes and speech in %d chunks", spec.id, len(items))
        return
    # The job shows what it now waits for, not the download it has finished.
    progress.stage(JobStage.CAPTIONING)
    with rt.session_factory.begin() as session:
        _dispatch(session, spec, info.duration, rt)
        jobs.hand_over(session, spec.id)


def chunk_done(
    spec: JobSpec,
    item: ItemSpec,
    result: bytes,
    duration: float,
    rt: Runtime,
    progress: ProgressReporter,
) -> None:
    """Store a chunk's result; the chunk stored last (of scenes and speech) plans the
    segments, following the scenes stitched from every scene chunk."""
    with rt.session_factory.begin() as session:
        if not work.finish_item(session, spec.id, item.index, result):
            return  # another task finished this chunk already
        done, total = work.count_done(session, spec.id, "chunks")
        if done == total:
            _dispatch(session, spec, duration, rt, _stitched(session, spec, duration, rt))
    stage = JobStage.DETECTING_SCENES if item.kind == ItemKind.SCENES else JobStage.TRANSCRIBING
    progress.stage(stage, done / total)


def segments_total(rt: Runtime, job_id: uuid.UUID) -> int:
    with rt.session_factory() as session:
        return work.count_done(session, job_id, "segments")[1]


def segment_stored(session: Session, job_id: uuid.UUID, rt: Runtime) -> float:
    """In the transaction that stored (or left out) a segment: the share of them done; the
    last one queues the summary."""
    done, total = work.count_done(session, job_id, "segments")
    if done == total:
        work.add_items(session, job_id, [{"kind": ItemKind.SUMMARY}], rt.settings.job_lease_seconds)
    return done / total


def _stitched(session: Session, spec: JobSpec, duration: float, rt: Runtime) -> list[Scene] | None:
    """The scenes of every scene chunk's cuts (None: the job asked for none)."""
    if not (spec.use_scenes and duration > 0):
        return None
    blobs = work.results_of(session, spec.id, ItemKind.SCENES)
    detector = spec.scenes.detector(rt.settings)
    cuts = cuts_from_scores([FRAME_SCORES.unpack(blob) for blob in blobs], detector)
    scenes = scenes_from_cuts(cuts, duration)
    log.info("job %s: %d scenes from %d chunks", spec.id, len(scenes), len(blobs))
    return scenes


def _dispatch(
    session: Session, spec: JobSpec, duration: float, rt: Runtime, scenes: list[Scene] | None = None
) -> None:
    """Plan the segments, store them and queue them in batches (when the session commits)."""
    settings = rt.settings
    plan = plan_within_cap(session, spec, duration, settings, scenes)
    work.add_segments(session, spec.id, plan.segments)
    work.set_totals(
        session,
        spec.id,
        segments_total=len(plan.segments),
        segments_done=0,
        segment_length=plan.segment_seconds,
    )
    items = batches(plan, settings)
    work.add_items(session, spec.id, items, settings.job_lease_seconds)
    log.info("job %s: %d segments in %d tasks", spec.id, len(plan.segments), len(items))
