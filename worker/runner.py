"""Drive one job through its stages: claim, fetch, probe, plan, extract, caption, summarise.

Plain functions over a Runtime (settings, sessions, the vision backend); the Celery task is a
thin adapter around `run_job`. Every stage boundary is a checkpoint: a cancelled job stops
there, and frames already captioned are never sent to the model again.
"""

from __future__ import annotations

import logging
import tempfile
import uuid
from dataclasses import replace
from pathlib import Path
from typing import Any, TypeVar

from db import frames as frame_repo
from db import jobs
from db.models import JobFrame
from db.spend import Spent
from scenecap.core.enums import JobKind, JobStage
from scenecap.core.errors import BudgetTooSmall, JobCancelled, WorkerLost
from scenecap.core.logs import job_context
from scenecap.core.media import SNIFF_BYTES, sniff_media
from scenecap.core.settings import Settings
from scenecap.core.tokens import frame_budget, frames_cost, least_budget
from worker.completion import answer_completion
from worker.frame_captions import caption_frames
from worker.outcome import Attempt, complete, fail, run_guarded
from worker.pipeline.extract import FRAMES, ExtractedFrame, ExtractOptions, extract_frames
from worker.pipeline.fetch import job_media
from worker.pipeline.merge import build_results
from worker.pipeline.plan import PlannedFrame, frame_count, plan_even, plan_scenes
from worker.pipeline.probe import MEDIA_INFO, Limits, MediaInfo, probe_media
from worker.pipeline.sandbox import SandboxLimits, Send, run_sandboxed
from worker.pipeline.scenes import SCENES, detect_scenes
from worker.progress import ProgressReporter
from worker.reuse import reused
from worker.runtime import Runtime
from worker.segmented import start_segments
from worker.spec import JobSpec, Media
from worker.speech.job import BackgroundTranscript
from worker.speech.transcribe import speech_lines
from worker.spend import Spend, reserve_plan
from worker.vision.base import (
    CaptionedFrame,
    Usage,
)

log = logging.getLogger(__name__)
T = TypeVar("T")


def run_job(job_id: uuid.UUID, rt: Runtime) -> None:
    """Process one job to a terminal state (or leave it to its canceller)."""
    with job_context(job_id):
        _run_job(job_id, rt)


def _run_job(job_id: uuid.UUID, rt: Runtime) -> None:
    with rt.session_factory.begin() as session:
        job = jobs.claim_job(session, job_id, rt.worker_id, rt.settings.job_lease_seconds)
        if job is None:
            log.info("job %s is not pending or running; nothing to do", job_id)
            return
        spec, attempts = JobSpec.of(job), job.attempts
    if attempts > rt.settings.job_max_attempts:
        fail(rt, job_id, WorkerLost.code, f"the job was interrupted {attempts - 1} times")
    else:
        _process(spec, rt, Attempt(attempts))


def _process(spec: JobSpec, rt: Runtime, attempt: Attempt) -> None:
    progress = ProgressReporter(
        rt.session_factory,
        spec.id,
        lease_seconds=rt.settings.job_lease_seconds,
        min_interval=rt.settings.progress_min_interval_seconds,
        listener=rt.progress_listener,
    )

    def work() -> None:
        try:
            steps()
        except JobCancelled:
            progress.finish()  # a cancelled job shows the time of the stage it stopped in too
            raise

    def steps() -> None:
        unrecorded = Spent()  # what the job's stored frames or segments did not add already
        if spec.kind == JobKind.COMPLETION and spec.request is not None:
            results = answer_completion(spec.id, spec.request, rt, progress)
            usage = results["completion"]["usage"]
            unrecorded = Spent(usage["prompt_tokens"], usage["completion_tokens"])
        elif spec.segment_seconds is not None:
            with tempfile.TemporaryDirectory(prefix="scenecap-") as directory:
                path, sha256 = fetch(spec, rt, progress, Path(directory))
                earlier = reused(spec, path, rt, sha256)
                if earlier is None:
                    media = probe(spec, rt, progress, path)
            if earlier is None:
                start_segments(spec, media.info, rt, progress)
                progress.finish()
                return  # the job's work items finish it
            results, usage = earlier
        else:
            results, usage, unrecorded = analyse(spec, rt, progress)
        progress.finish()
        complete(rt, spec, results, usage, unrecorded)

    run_guarded(rt, spec.id, attempt, work)


def fetch(
    spec: JobSpec, rt: Runtime, progress: ProgressReporter, directory: Path
) -> tuple[Path, str | None]:
    """Stage `downloading`: the media as a local file (fetched once into the store), and its
    SHA-256 if it was fetched now."""
    settings = rt.settings
    progress.stage(JobStage.DOWNLOADING)
    path, sha256 = job_media(
        spec.id,
        spec.media_url,
        spec.media_data,
        rt.store,
        directory,
        settings,
        local_files=rt.local_files,
    )
    if spec.media_data is not None:  # the store holds it now: no need to keep two copies
        with rt.session_factory.begin() as session:
            jobs.clear_media_data(session, spec.id)
    return path, sha256


def probe(spec: JobSpec, rt: Runtime, progress: ProgressReporter, path: Path) -> Media:
    """The end of stage `downloading`: what the file is (sniffed, then probed in the sandbox)."""
    settings = rt.settings
    with path.open("rb") as media:
        sniffed = sniff_media(media.read(SNIFF_BYTES))
    is_image = sniffed.kind == "image"
    info = run_sandboxed(
        lambda _send: probe_media(path, Limits.of(settings), is_image=is_image),
        SandboxLimits.of(settings),
        codec=MEDIA_INFO,
    )
    with rt.session_factory.begin() as session:
        jobs.set_media_info(session, spec.id, {**info.as_dict(), "mime": sniffed.mime})
    progress.stage(JobStage.DOWNLOADING, 1.0)
    return Media(path, info, is_image, sniffed.mime)


def analyse(
    spec: JobSpec, rt: Runtime, progress: ProgressReporter
) -> tuple[dict[str, Any], dict[str, Any], Spent]:
    """Run the frame-mode pipeline for one job; return its results, its usage, and what its
    summary and speech cost (its frames' cost is in the ledger already)."""
    settings = rt.settings
    request = spec.caption_request
    with tempfile.TemporaryDirectory(prefix="scenecap-") as directory:
        path, sha256 = fetch(spec, rt, progress, Path(directory))
        earlier = reused(spec, path, rt, sha256)
        if earlier is not None:
            return (*earlier, Spent())
        media = probe(spec, rt, progress, path)
        path, info = media.path, media.info
        # An image has one frame and no summary (its caption is its description).
        count = 1 if media.is_image else frame_count(spec.max_frames, settings.frame_budget)
        heard, summary = spec.wants_transcript, not media.is_image
        wanted = frames_cost(settings, count, heard=heard, summary=summary)
        spec = reserve_plan(rt, spec, wanted, least_budget(settings, heard=heard, summary=summary))
        speech = BackgroundTranscript(spec, media, rt) if spec.wants_transcript else None
        cap = spec.token_cap
        budget = (
            frame_budget(settings, cap, count, heard=heard, summary=summary)
            if cap is not None
            else None
        )
        if cap is not None and budget is None:
            raise BudgetTooSmall(f"max_total_tokens {cap} does not fit one frame and the summary")
        options = ExtractOptions.of(settings)
        if budget is not None:
            count, options = budget.frames, replace(options, max_pixels=budget.max_pixels)
        try:
            plan = plan_frames(spec, info, path, settings, progress, count, is_image=media.is_image)
            stored = _stored_frames(rt, spec.id)
            todo = [p for p in plan if p.index not in stored]
            progress.stage(JobStage.EXTRACTING_FRAMES)
            extracted = run_sandboxed(
                lambda send: _extract(path, todo, info, options, send),
                SandboxLimits.of(settings),
                on_message=lambda done: progress.stage(
                    JobStage.EXTRACTING_FRAMES, done / len(todo)
                ),
                codec=FRAMES,
            )
            transcript = speech.result(progress) if speech else None
        finally:
            if speech is not None:
                speech.close()
    progress.stage(JobStage.CAPTIONING, len(stored) / len(plan))
    spend = Spend(spec.id, reserve=budget.reserve) if budget is not None else None
    left_out = rt.run(
        caption_frames(
            rt,
            spec.id,
            spec.api_key_id,
            request,
            extracted,
            progress,
            done=len(stored),
            total=len(plan),
            transcript=transcript,
            spend=spend,
            per_frame_text=budget.per_frame_text if budget else 0,
        )
    )

    progress.stage(JobStage.SUMMARIZING)
    rows = list(_stored_frames(rt, spec.id).values())
    captioned = [_captioned(row) for row in rows]
    partial = left_out > 0
    said = speech_lines(transcript) if transcript else ""
    if media.is_image:
        description, summary_usage = captioned[0].caption, Usage()
    elif spend is not None and not spend.summary_fits(rt):
        description, summary_usage, partial = "", Usage(), True  # no room left to summarise
    else:
        if spend is not None:  # cut, never condensed by the model: that would cost tokens
            said = said[: settings.summary_prompt_tokens]
        description, summary_usage = rt.run(
            rt.backend.summarise(captioned, request, info.as_dict(), said)
        )
    progress.stage(JobStage.SUMMARIZING, 1.0)
    scene_bounds = (
        {r.index: (r.scene_start, r.scene_end) for r in rows} if spec.use_scenes else None
    )
    results = build_results(
        captioned,
        metadata_types=spec.metadata_types,
        description=description,
        scene_bounds=scene_bounds,
        unparsed={r.index for r in rows if not r.parsed},
    )
    usage = _usage(rows, summary_usage, rt.backend.model_name(request))
    if partial:
        results["partial"] = True
    unrecorded = Spent(summary_usage.prompt_tokens, summary_usage.completion_tokens)
    if transcript is not None:
        results["transcript"] = transcript.as_result()
        usage["audio_seconds"] = round(transcript.audio_seconds, 3)
        unrecorded = replace(unrecorded, audio_seconds=usage["audio_seconds"])
    return results, usage, unrecorded


def plan_frames(
    spec: JobSpec,
    info: MediaInfo,
    path: Path,
    settings: Settings,
    progress: ProgressReporter,
    count: int,
    *,
    is_image: bool,
) -> list[PlannedFrame]:
    """Choose up to `count` frames to caption (deterministic, so a retry plans the same)."""
    if is_image:
        return [PlannedFrame(0, 0.0)]
    if not spec.use_scenes:
        return plan_even(info.duration, count, settings.min_frame_gap_seconds)
    progress.stage(JobStage.DETECTING_SCENES)
    scenes = run_sandboxed(
        lambda send: detect_scenes(
            path, info.duration, spec.scenes.detector(settings), on_progress=send
        ),
        SandboxLimits.of(settings),
        on_message=lambda fraction: progress.stage(JobStage.DETECTING_SCENES, fraction),
        codec=SCENES,
    )
    return plan_scenes(scenes, count)


def _extract(
    path: Path, todo: list[PlannedFrame], info: MediaInfo, options: ExtractOptions, send: Send
) -> list[ExtractedFrame]:
    """In the sandbox: decode the frames still to caption, reporting each one done."""
    extracted: list[ExtractedFrame] = []
    for frame in extract_frames(path, todo, options, info.timeline):
        extracted.append(frame)
        send(len(extracted))
    return extracted


def _stored_frames(rt: Runtime, job_id: uuid.UUID) -> dict[int, JobFrame]:
    with rt.session_factory() as session:
        return {row.index: row for row in frame_repo.stored_frames(session, job_id)}


def _captioned(row: JobFrame) -> CaptionedFrame:
    return CaptionedFrame(
        row.index, row.timestamp, row.caption, row.frame_metadata, row.details or {}
    )


def _usage(rows: list[JobFrame], summary: Usage, model: str) -> dict[str, Any]:
    prompt = sum(r.prompt_tokens for r in rows) + summary.prompt_tokens
    completion = sum(r.completion_tokens for r in rows) + summary.completion_tokens
    return {
        "frames": len(rows),
        "model": model,
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "total_tokens": prompt + completion,
    }
