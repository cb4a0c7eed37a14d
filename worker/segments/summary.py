"""Segment mode's last step: chapters from the segments' captions, a description from the
chapters, and the job completed."""

from __future__ import annotations

from db import jobs, work
from scenecap.core.enums import JobStage
from worker.job.budget import summary_cost, summary_fits
from worker.job.outcome import finish
from worker.job.progress import ProgressReporter
from worker.job.spec import JobSpec
from worker.job.usage import JobUsage
from worker.pipeline.merge import build_segment_results
from worker.runtime import Runtime
from worker.segments.chunks import stored_transcript
from worker.speech.transcribe import speech_lines
from worker.vision.base import CaptionedSegment, Usage
from worker.vision.local import chapters_by_labels


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
    if not summary_fits(rt, spec, cost):
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
    frames = sum(len(r.frame_times or ()) for r in rows)
    model = rt.backend.model_name(request)
    usage = JobUsage.of(model, rows, summary, frames=frames, segments=len(rows))
    finish(rt, spec, progress, results, usage, summary, transcript=transcript, partial=partial)
