"""Drive one job through its stages: claim, fetch, probe, plan, extract, caption, summarise.

Plain functions over a Runtime (settings, sessions, the vision backend); the Celery task is a
thin adapter around `run_job`. Every stage boundary is a checkpoint: a cancelled job stops
there, and frames already captioned are never sent to the model again.
"""

from __future__ import annotations

import asyncio
import logging
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any, TypeVar

from db import frames as frame_repo
from db import jobs
from db.models import JobFrame
from scenecap.core.enums import JobKind, JobStage
from scenecap.core.errors import JobCancelled, WorkerLost
from scenecap.core.logs import job_context
from scenecap.core.media import SNIFF_BYTES, sniff_media
from scenecap.core.settings import Settings
from scenecap.store import paths
from worker.completion import answer_completion
from worker.outcome import complete, fail, settle
from worker.pipeline.extract import FRAMES, ExtractedFrame, ExtractOptions, extract_frames
from worker.pipeline.fetch import job_media
from worker.pipeline.merge import build_results
from worker.pipeline.plan import PlannedFrame, frame_count, plan_even, plan_scenes
from worker.pipeline.probe import MEDIA_INFO, Limits, MediaInfo, probe_media
from worker.pipeline.sandbox import SandboxLimits, Send, run_sandboxed
from worker.pipeline.scenes import SCENES, detect_scenes
from worker.progress import ProgressReporter
from worker.runtime import Runtime
from worker.segmented import start_segments
from worker.spec import JobSpec, Media
from worker.speech.job import BackgroundTranscript
from worker.speech.transcribe import speech_lines
from worker.speech.transcript import Transcript
from worker.vision.base import (
    CaptionedFrame,
    CaptionRequest,
    FrameCaption,
    FrameImage,
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
        _process(spec, rt)


def _process(spec: JobSpec, rt: Runtime) -> None:
    progress = ProgressReporter(
        rt.session_factory,
        spec.id,
        lease_seconds=rt.settings.job_lease_seconds,
        min_interval=rt.settings.progress_min_interval_seconds,
        listener=rt.progress_listener,
    )

    def work() -> None:
        if spec.kind == JobKind.COMPLETION and spec.request is not None:
            results = answer_completion(spec.id, spec.request, rt, progress)
            usage = results["completion"]["usage"]
        elif spec.segment_seconds is not None:
            with tempfile.TemporaryDirectory(prefix="scenecap-") as directory:
                media = fetch_and_probe(spec, rt, progress, Path(directory))
            start_segments(spec, media.info, rt, progress)
            progress.finish()
            return  # the job's work items finish it
        else:
            results, usage = analyse(spec, rt, progress)
        progress.finish()
        complete(rt, spec.id, results, usage)

    settle(rt, spec.id, work)


def fetch_and_probe(
    spec: JobSpec, rt: Runtime, progress: ProgressReporter, directory: Path
) -> Media:
    """Stage `downloading`: the media as a local file (fetched once into the store), probed."""
    settings = rt.settings
    progress.stage(JobStage.DOWNLOADING)
    path = job_media(
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
) -> tuple[dict[str, Any], dict[str, Any]]:
    """Run the frame-mode pipeline for one job; return its results and usage."""
    settings = rt.settings
    request = spec.caption_request
    with tempfile.TemporaryDirectory(prefix="scenecap-") as directory:
        media = fetch_and_probe(spec, rt, progress, Path(directory))
        path, info = media.path, media.info
        speech = BackgroundTranscript(spec, media, rt) if spec.wants_transcript else None
        try:
            plan = plan_frames(spec, info, path, settings, progress, is_image=media.is_image)
            stored = _stored_frames(rt, spec.id)
            todo = [p for p in plan if p.index not in stored]
            progress.stage(JobStage.EXTRACTING_FRAMES)
            extracted = run_sandboxed(
                lambda send: _extract(path, todo, info, settings, send),
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
    rt.run(
        caption_frames(
            rt,
            spec.id,
            request,
            extracted,
            progress,
            done=len(stored),
            total=len(plan),
            transcript=transcript,
        )
    )

    progress.stage(JobStage.SUMMARIZING)
    rows = list(_stored_frames(rt, spec.id).values())
    captioned = [_captioned(row) for row in rows]
    if media.is_image:
        description, summary_usage = captioned[0].caption, Usage()
    else:
        said = speech_lines(transcript) if transcript else ""
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
    if transcript is not None:
        results["transcript"] = transcript.as_result()
        usage["audio_seconds"] = round(transcript.audio_seconds, 3)
    return results, usage


def plan_frames(
    spec: JobSpec,
    info: MediaInfo,
    path: Path,
    settings: Settings,
    progress: ProgressReporter,
    *,
    is_image: bool,
) -> list[PlannedFrame]:
    """Choose the frames to caption for this job (deterministic, so a retry plans the same)."""
    if is_image:
        return [PlannedFrame(0, 0.0)]
    count = frame_count(spec.max_frames, settings.frame_budget)
    if not spec.use_scenes:
        return plan_even(info.duration, count, settings.min_frame_gap_seconds)
    progress.stage(JobStage.DETECTING_SCENES)
    scenes = run_sandboxed(
        lambda send: detect_scenes(
            path,
            info.duration,
            detector=settings.scene_detector,
            threshold=settings.scene_threshold,
            on_progress=send,
        ),
        SandboxLimits.of(settings),
        on_message=lambda fraction: progress.stage(JobStage.DETECTING_SCENES, fraction),
        codec=SCENES,
    )
    return plan_scenes(scenes, count)


def _extract(
    path: Path, todo: list[PlannedFrame], info: MediaInfo, settings: Settings, send: Send
) -> list[ExtractedFrame]:
    """In the sandbox: decode the frames still to caption, reporting each one done."""
    extracted: list[ExtractedFrame] = []
    for frame in extract_frames(path, todo, ExtractOptions.of(settings), info.timeline):
        extracted.append(frame)
        send(len(extracted))
    return extracted


async def caption_frames(
    rt: Runtime,
    job_id: uuid.UUID,
    request: CaptionRequest,
    extracted: list[ExtractedFrame],
    progress: ProgressReporter,
    *,
    done: int,
    total: int,
    transcript: Transcript | None = None,
) -> None:
    """Caption frames concurrently (bounded); store each as soon as it is answered.

    A cancellation or a failure stops new requests, but never one in flight: it is paid for,
    and a request cut off mid-answer can leave its pooled connection unusable.
    """
    limit = asyncio.Semaphore(rt.backend.max_concurrency)
    stopped: list[BaseException] = []  # why captioning stops: a cancellation, or a failure
    finished = done

    def store(frame: ExtractedFrame, answer: FrameCaption, seconds: float) -> bool:
        nonlocal finished
        _store_frame(rt, job_id, frame, answer, seconds)
        finished += 1
        return progress.update(JobStage.CAPTIONING, finished / total)

    async def caption_one(frame: ExtractedFrame) -> None:
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
            started = time.perf_counter()
            try:
                answer = await rt.backend.caption(image, request)
            except Exception as exc:  # raised below, once every request in flight is back
                stopped.append(exc)
                return
            seconds = time.perf_counter() - started
        if not await asyncio.to_thread(store, frame, answer, seconds):
            stopped.append(JobCancelled("the job was cancelled"))

    await asyncio.gather(*(caption_one(frame) for frame in extracted))
    if stopped:
        # Say one thing: a cancellation first, else the first failure.
        raise next((e for e in stopped if isinstance(e, JobCancelled)), stopped[0])


def _store_frame(
    rt: Runtime, job_id: uuid.UUID, frame: ExtractedFrame, answer: FrameCaption, seconds: float
) -> None:
    # The thumbnail first: a frame row always has its thumbnail in the store.
    rt.store.put(paths.thumbnail(job_id, frame.planned.index), frame.thumbnail)
    with rt.session_factory.begin() as session:
        frame_repo.save_frame(
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
