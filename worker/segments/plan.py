"""Segment mode's plan: the segments, within the job's cap, and the work items that do them."""

from __future__ import annotations

import math
from typing import Any

from sqlalchemy.orm import Session

from db.work import ItemKind
from scenecap.core.errors import BudgetTooSmall
from scenecap.core.settings import Settings
from worker.job.budget import (
    request_shape,
    reserved_spec,
    segment_cost,
    segments_within,
    summary_cost,
)
from worker.job.spec import JobSpec
from worker.pipeline.plan import Scene
from worker.pipeline.probe import MediaInfo
from worker.pipeline.scenes import chunk_bounds
from worker.pipeline.segments import SegmentPlan, plan_segments
from worker.speech.transcript import chunk_spans


def plan_within_cap(
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


def _plan_cost(spec: JobSpec, settings: Settings, segments: int) -> int:
    """The most `segments` segments and their summary cost, by our estimates."""
    heard = spec.wants_transcript
    count, pixels = request_shape(spec, settings)
    each = segment_cost(settings, spec.metadata_types, count, pixels, heard=heard)
    return segments * each + sum(summary_cost(settings, segments, heard=heard))


def _most_segments(spec: JobSpec, settings: Settings, cap: int | None) -> int:
    """MAX_SEGMENTS, or fewer if `cap` tokens afford fewer (the segments then widen, as at
    MAX_SEGMENTS)."""
    if cap is None:
        return settings.max_segments
    count, pixels = request_shape(spec, settings)
    most = segments_within(
        settings, cap, spec.metadata_types, count, pixels, heard=spec.wants_transcript
    )
    if most < 1:
        raise BudgetTooSmall(f"{cap} tokens do not fit one segment and its summary")
    return min(settings.max_segments, most)


def batches(plan: SegmentPlan, settings: Settings) -> list[dict[str, Any]]:
    """The work items that caption the plan's segments, SEGMENTS_PER_TASK each."""
    size, count = settings.segments_per_task, len(plan.segments)
    return [
        {"kind": ItemKind.SEGMENTS, "first": first, "last": min(first + size, count) - 1}
        for first in range(0, count, size)
    ]


def chunks(spec: JobSpec, info: MediaInfo, settings: Settings) -> list[dict[str, Any]]:
    """The work items that come before the segments: scene detection and speech, in chunks."""
    items: list[dict[str, Any]] = []
    if spec.use_scenes and info.duration > 0:
        items += [
            {"kind": ItemKind.SCENES, "first": n, "last": n, "start": start, "end": end}
            for n, (start, end) in enumerate(
                chunk_bounds(info.timeline, settings.scene_chunk_seconds)
            )
        ]
    if spec.wants_transcript and info.has_audio:
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
    return items
