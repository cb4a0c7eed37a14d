"""Segment mode's chunks, the steps before the segments: one stretch of the video scored for
scene detection, or one stretch of its sound transcribed. Each hands its result to the flow."""

from __future__ import annotations

import json
import math
import uuid
from pathlib import Path

from db import work
from db.work import ItemKind
from scenecap.core.enums import JobStage
from worker.job.progress import ProgressReporter
from worker.job.spec import ItemSpec, JobSpec
from worker.pipeline.sandbox import SandboxLimits, run_sandboxed
from worker.pipeline.scenes import FRAME_SCORES, score_frames
from worker.runtime import Runtime
from worker.segments.flow import chunk_done
from worker.speech.transcribe import joined, speech_backend, transcribe_chunk
from worker.speech.transcript import ChunkSpan, Transcript


def run_chunk(
    spec: JobSpec,
    item: ItemSpec,
    media: Path,
    duration: float,
    rt: Runtime,
    progress: ProgressReporter,
) -> None:
    """Score one stretch's frames for scene detection, or transcribe one stretch of the
    sound; hand the result to the flow."""
    if item.kind == ItemKind.SCENES:
        progress.stage(JobStage.DETECTING_SCENES)
        result = _scores(item, media, duration, rt)
    else:
        progress.stage(JobStage.TRANSCRIBING)
        result = _transcribed(item, media, rt)
    chunk_done(spec, item, result, duration, rt, progress)


def _scores(item: ItemSpec, media: Path, duration: float, rt: Runtime) -> bytes:
    last = item.end is None or item.end >= duration
    scores = run_sandboxed(
        lambda _send: score_frames(media, item.start or 0.0, None if last else item.end),
        SandboxLimits.of(rt.settings),
        codec=FRAME_SCORES,
    )
    return FRAME_SCORES.pack(scores)


def _transcribed(item: ItemSpec, media: Path, rt: Runtime) -> bytes:
    span = ChunkSpan(item.first, item.start or 0.0, math.inf if item.end is None else item.end)

    async def transcribed() -> Transcript:
        client = speech_backend(rt.settings)
        try:
            return await transcribe_chunk(media, span, client, SandboxLimits.of(rt.settings))
        finally:
            await client.aclose()

    return json.dumps(rt.run(transcribed()).dumped()).encode()


def stored_transcript(rt: Runtime, job_id: uuid.UUID) -> Transcript:
    """The job's transcript, from its speech chunks' results."""
    with rt.session_factory() as session:
        blobs = work.results_of(session, job_id, ItemKind.SPEECH)
    return joined([Transcript.of(json.loads(blob)) for blob in blobs if blob])
