"""Run one work item of a segment-mode job (docs/architecture.md, "Long videos"): claim it,
do it, mark it done. Items are leased like jobs: one whose worker vanished is queued again by
the reaper, and one that keeps losing its worker fails the job rather than loop."""

from __future__ import annotations

import logging
import uuid
from functools import lru_cache
from typing import Any

from db import jobs, work
from db.work import ItemKind
from scenecap.core.errors import WorkerLost
from scenecap.core.logs import job_context
from scenecap.store import MediaStore, paths
from worker.job.outcome import Attempt, fail, run_guarded
from worker.job.progress import ProgressReporter
from worker.job.spec import ItemSpec, JobSpec
from worker.pipeline.fetch import stored_media
from worker.pipeline.probe import MEDIA_INFO, MediaInfo
from worker.runtime import Runtime
from worker.segments.captions import caption_batch
from worker.segments.chunks import run_chunk
from worker.segments.summary import summarise

log = logging.getLogger(__name__)


def run_work_item(job_id: uuid.UUID, index: int, rt: Runtime) -> None:
    """Do one work item, if it is still to do and its job still runs."""
    with job_context(job_id):
        with rt.session_factory.begin() as session:
            claimed = work.claim_item(
                session, job_id, index, rt.worker_id, rt.settings.job_lease_seconds
            )
            job = jobs.get_job(session, job_id, with_media=True) if claimed else None
            if claimed is None or job is None:
                log.info("work item %s/%d is done, taken or its job ended", job_id, index)
                return
            item, spec = ItemSpec.of(claimed), JobSpec.of(job)
            media_info: dict[str, Any] = dict(job.media_info or {})
        if item.attempts > rt.settings.job_max_attempts:
            message = f"a part of the job ({item.kind}) was interrupted {item.attempts - 1} times"
            fail(rt, job_id, WorkerLost.code, message)
            return
        progress = ProgressReporter.of(rt, job_id, item=index)
        run_guarded(
            rt,
            job_id,
            Attempt(item.attempts, claimed),
            lambda: _run(spec, item, media_info, rt, progress),
        )
        with rt.session_factory.begin() as session:  # unless it was finished
            work.release_item(session, job_id, index, rt.worker_id)


def _run(
    spec: JobSpec,
    item: ItemSpec,
    media_info: dict[str, Any],
    rt: Runtime,
    progress: ProgressReporter,
) -> None:
    if item.kind == ItemKind.SUMMARY:
        summarise(spec, rt, progress)
    else:
        media = stored_media(
            spec.id, spec.media_url, rt.store, rt.media_cache, local_files=rt.local_files
        )
        duration = float(media_info.get("duration") or 0.0)
        if item.kind in (ItemKind.SCENES, ItemKind.SPEECH):
            run_chunk(spec, item, media, duration, rt, progress)
        else:
            timeline = probed(rt.store, spec.id).timeline
            caption_batch(spec, item.first, item.last, media, timeline, rt, progress)
    with rt.session_factory.begin() as session:
        work.finish_item(session, spec.id, item.index)
    progress.finish()


@lru_cache(maxsize=4)
def probed(store: MediaStore, job_id: uuid.UUID) -> MediaInfo:
    """What the job's probe measured (kept for the job's next few tasks in this process)."""
    return MEDIA_INFO.unpack(store.get(paths.probe(job_id)))
