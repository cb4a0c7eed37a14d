"""Reuse what the key already paid for (docs/api.md, "Cost controls").

A job's reuse key is the SHA-256 of its fetched bytes with the model, the prompt version,
the metadata types and every plan parameter (mode, frames, scenes, segments, budget). A
completed job of the **same key** with the same reuse key gives its captions, transcript
and results to the new job, which then makes no model call; never another key's, which
would tell one customer what another has processed.
"""

from __future__ import annotations

import copy
import hashlib
import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from db import jobs, reuse
from scenecap.store import paths
from worker.job.spec import JobSpec
from worker.job.usage import JobUsage
from worker.runtime import Runtime
from worker.vision.prompt import PROMPT_VERSION

log = logging.getLogger(__name__)


def media_sha256(path: Path) -> str:
    with path.open("rb") as file:
        return hashlib.file_digest(file, "sha256").hexdigest()


def reuse_key(spec: JobSpec, sha256: str, model: str) -> str:
    plan = {
        "sha256": sha256,
        "model": model,
        "prompt": PROMPT_VERSION,
        "metadata": sorted(spec.metadata_types),
        "transcript": spec.wants_transcript,
        "use_scenes": spec.use_scenes,
        "max_frames": spec.max_frames,
        "segment_seconds": spec.segment_seconds,
        "frames_per_segment": spec.frames_per_segment if spec.segment_seconds else None,
        "max_total_tokens": spec.max_total_tokens,
    }
    if spec.use_scenes and (spec.scenes.threshold, spec.scenes.min_seconds) != (None, None):
        # Only when asked for: every earlier job's key stays what it was.
        plan["scenes"] = [spec.scenes.threshold, spec.scenes.min_seconds]
    return hashlib.sha256(json.dumps(plan, sort_keys=True).encode()).hexdigest()


@dataclass(frozen=True)
class Reused:
    """What an earlier job of the key found, given to this one."""

    results: dict[str, Any]
    usage: JobUsage


def reused(spec: JobSpec, path: Path, rt: Runtime, sha256: str | None = None) -> Reused | None:
    """Record the job's reuse key; the results and usage of an earlier job of the key with
    the same one (its frames, segments, thumbnails and media info copied to this job, so the
    media is not even probed), or None. `sha256`: the media's, if taken on the way in."""
    model = rt.backend.model_name(spec.caption_request)
    # Hashed as it was fetched, or known from its upload or an earlier attempt; else read.
    sha256 = sha256 or spec.media_sha256 or media_sha256(path)
    key = reuse_key(spec, sha256, model)
    with rt.session_factory.begin() as session:
        reuse.set_reuse_key(session, spec.id, sha256, key)
        source = reuse.reusable_job(session, spec.api_key_id, key, besides=spec.id)
        if source is None or not source.results:
            return None
        frames, segments = reuse.copy_captions(session, source.id, spec.id)
        jobs.set_media_info(session, spec.id, source.media_info or {})
        results, their_usage = copy.deepcopy(source.results), dict(source.usage or {})
        source_id = source.id
    # The thumbnails and the transcript: the report and a retry read them from the store.
    for stored in rt.store.list(paths.job(source_id)):
        if stored.key != paths.media(source_id):
            rt.store.copy(stored.key, stored.key.replace(str(source_id), str(spec.id), 1))
    log.info("job %s reuses the captions of job %s", spec.id, source_id)
    return Reused(results, JobUsage.reused(model, their_usage, frames, segments))
