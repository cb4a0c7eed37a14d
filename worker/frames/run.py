"""Frame mode: plan up to MAX_FRAMES frames (even, or one per scene), extract them in the
sandbox, caption them, summarise. Every stage boundary is a checkpoint: a cancelled job stops
there, and frames already captioned are never sent to the model again."""

from __future__ import annotations

import uuid
from dataclasses import replace
from pathlib import Path

from db import frames as frame_repo
from db.models import JobFrame
from scenecap.core.enums import JobStage
from scenecap.core.errors import BudgetTooSmall
from scenecap.core.settings import Settings
from scenecap.core.tokens import FrameBudget, frame_budget, frames_cost, least_budget
from worker.frames.captions import caption_frames
from worker.job.budget import Spend, reserve_plan
from worker.job.outcome import finish
from worker.job.progress import ProgressReporter
from worker.job.spec import JobSpec, Media
from worker.job.usage import JobUsage
from worker.pipeline.extract import FRAMES, ExtractedFrame, ExtractOptions, extract_frames
from worker.pipeline.merge import build_results
from worker.pipeline.plan import PlannedFrame, frame_count, plan_even, plan_scenes
from worker.pipeline.probe import MediaInfo
from worker.pipeline.sandbox import SandboxLimits, Send, run_sandboxed
from worker.pipeline.scenes import SCENES, detect_scenes
from worker.runtime import Runtime
from worker.speech.job import BackgroundTranscript
from worker.speech.transcribe import speech_lines
from worker.speech.transcript import Transcript
from worker.vision.base import CaptionedFrame, Usage


def analyse(spec: JobSpec, media: Media, rt: Runtime, progress: ProgressReporter) -> None:
    """Run the frame-mode pipeline for one job, to COMPLETED."""
    settings = rt.settings
    spec, count, budget = _within_budget(spec, media, rt)
    options = ExtractOptions.of(settings)
    if budget is not None:
        count, options = budget.frames, replace(options, max_pixels=budget.max_pixels)
    speech = BackgroundTranscript(spec, media, rt) if spec.wants_transcript else None
    try:
        plan = plan_frames(spec, media, settings, progress, count)
        stored = _stored_frames(rt, spec.id)
        todo = [p for p in plan if p.index not in stored]
        progress.stage(JobStage.EXTRACTING_FRAMES)
        extracted = run_sandboxed(
            lambda send: _extract(media.path, todo, media.info, options, send),
            SandboxLimits.of(settings),
            on_message=lambda done: progress.stage(JobStage.EXTRACTING_FRAMES, done / len(todo)),
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
            spec.caption_request,
            extracted,
            progress,
            done=len(stored),
            total=len(plan),
            transcript=transcript,
            spend=spend,
            per_frame_text=budget.per_frame_text if budget else 0,
        )
    )
    _summarise(spec, media, rt, progress, spend, transcript, partial=left_out > 0)


def _within_budget(
    spec: JobSpec, media: Media, rt: Runtime
) -> tuple[JobSpec, int, FrameBudget | None]:
    """How many frames to plan; the spec with its plan reserved under a quota; and, for a
    capped job, the frames and pixels its cap affords."""
    settings = rt.settings
    # An image has one frame and no summary (its caption is its description).
    count = 1 if media.is_image else frame_count(spec.max_frames, settings.frame_budget)
    heard, summary = spec.wants_transcript, not media.is_image
    wanted = frames_cost(settings, count, heard=heard, summary=summary)
    spec = reserve_plan(rt, spec, wanted, least_budget(settings, heard=heard, summary=summary))
    cap = spec.token_cap
    if cap is None:
        return spec, count, None
    budget = frame_budget(settings, cap, count, heard=heard, summary=summary)
    if budget is None:
        raise BudgetTooSmall(f"max_total_tokens {cap} does not fit one frame and the summary")
    return spec, count, budget


def _summarise(
    spec: JobSpec,
    media: Media,
    rt: Runtime,
    progress: ProgressReporter,
    spend: Spend | None,
    transcript: Transcript | None,
    *,
    partial: bool,
) -> None:
    """The description from the stored frames' captions; the results; COMPLETED."""
    progress.stage(JobStage.SUMMARIZING)
    request = spec.caption_request
    rows = list(_stored_frames(rt, spec.id).values())
    captioned = [_captioned(row) for row in rows]
    said = speech_lines(transcript) if transcript else ""
    if media.is_image:
        description, summary = captioned[0].caption, Usage()
    elif spend is not None and not spend.summary_fits(rt):
        description, summary, partial = "", Usage(), True  # no room left to summarise
    else:
        if spend is not None:  # cut, never condensed by the model: that would cost tokens
            said = said[: rt.settings.summary_prompt_tokens]
        description, summary = rt.run(
            rt.backend.summarise(captioned, request, media.info.as_dict(), said)
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
    usage = JobUsage.of(rt.backend.model_name(request), rows, summary, frames=len(rows))
    finish(rt, spec, progress, results, usage, summary, transcript=transcript, partial=partial)


def plan_frames(
    spec: JobSpec, media: Media, settings: Settings, progress: ProgressReporter, count: int
) -> list[PlannedFrame]:
    """Choose up to `count` frames to caption (deterministic, so a retry plans the same)."""
    if media.is_image:
        return [PlannedFrame(0, 0.0)]
    duration = media.info.duration
    if not spec.use_scenes:
        return plan_even(duration, count, settings.min_frame_gap_seconds)
    progress.stage(JobStage.DETECTING_SCENES)
    scenes = run_sandboxed(
        lambda send: detect_scenes(
            media.path, duration, spec.scenes.detector(settings), on_progress=send
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
