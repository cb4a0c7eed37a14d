"""Segment planning (pure functions): which stretches of a long video are captioned, and at
which times each takes its frames (docs/architecture.md, "Long videos")."""

from __future__ import annotations

import math
from dataclasses import dataclass

from worker.pipeline.plan import Scene


@dataclass(frozen=True)
class PlannedSegment:
    index: int
    start: float
    end: float
    frame_times: tuple[float, ...]


@dataclass(frozen=True)
class SegmentPlan:
    segment_seconds: float  # the length used: the requested one, or longer to fit the cap
    segments: list[PlannedSegment]


def plan_segments(
    duration: float,
    segment_seconds: float,
    frames_per_segment: int,
    *,
    max_segments: int,
    min_gap: float,
    scenes: list[Scene] | None = None,
) -> SegmentPlan:
    """Cut the video into segments of at most `segment_seconds` (lengthened until there are
    no more than `max_segments`); with scenes, segments follow them, a scene longer than the
    length being split into equal parts no longer than it."""
    if duration <= 0:
        return SegmentPlan(segment_seconds, [PlannedSegment(0, 0.0, 0.0, (0.0,))])
    spans = list(scenes) if scenes else [Scene(0.0, duration)]
    spans = _at_most(spans, max_segments)
    length = max(segment_seconds, _least_length(spans, max_segments))
    bounds = [part for span in spans for part in _split(span, length)]
    segments = [
        PlannedSegment(i, round(a, 3), round(b, 3), _frame_times(a, b, frames_per_segment, min_gap))
        for i, (a, b) in enumerate(bounds)
    ]
    return SegmentPlan(round(length, 3), segments)


def _at_most(scenes: list[Scene], count: int) -> list[Scene]:
    """Join the shortest neighbouring scenes until there are no more than `count`."""
    scenes = list(scenes)
    while len(scenes) > count:
        shortest = min(
            range(len(scenes) - 1), key=lambda i: scenes[i].length + scenes[i + 1].length
        )
        scenes[shortest : shortest + 2] = [Scene(scenes[shortest].start, scenes[shortest + 1].end)]
    return scenes


def _least_length(spans: list[Scene], max_segments: int) -> float:
    """The shortest segment length that splits the spans into at most max_segments parts."""
    low, high = 0.001, max(span.length for span in spans)
    if sum(math.ceil(span.length / high) for span in spans) > max_segments:
        return high
    for _ in range(60):  # bisection to a millisecond is plenty
        middle = (low + high) / 2
        if sum(math.ceil(span.length / middle) for span in spans) <= max_segments:
            high = middle
        else:
            low = middle
    return high


def _split(span: Scene, length: float) -> list[tuple[float, float]]:
    """Equal parts of the span, as few as keep each within length (equal parts leave no
    sliver at the end to join, and joining one made parts longer than asked)."""
    parts = max(1, math.ceil(span.length / length - 1e-9))
    step = span.length / parts
    return [(span.start + i * step, span.start + (i + 1) * step) for i in range(parts)]


def _frame_times(start: float, end: float, count: int, min_gap: float) -> tuple[float, ...]:
    """Frames at the centres of equal slices of the segment, never closer than min_gap."""
    span = end - start
    if min_gap > 0:
        count = max(1, min(count, int(span / min_gap)))
    step = span / count
    return tuple(round(start + step * (i + 0.5), 3) for i in range(count))
