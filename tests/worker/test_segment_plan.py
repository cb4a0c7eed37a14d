"""Segment planning: lengths, the MAX_SEGMENTS rule, scenes, and each segment's frame times."""

from __future__ import annotations

import itertools

import pytest

from worker.pipeline.plan import Scene
from worker.pipeline.segments import plan_segments


def bounds(plan: object) -> list[tuple[float, float]]:
    return [(s.start, s.end) for s in plan.segments]  # type: ignore[attr-defined]


def test_a_video_is_cut_into_segments_of_the_requested_length() -> None:
    plan = plan_segments(4 * 3600, 10, 4, max_segments=2000, min_gap=0.5)
    assert plan.segment_seconds == 10 and len(plan.segments) == 1440
    assert plan.segments[0].start == 0.0 and plan.segments[-1].end == 4 * 3600
    assert all(a.end == b.start for a, b in itertools.pairwise(plan.segments))
    assert [s.index for s in plan.segments] == list(range(1440))


def test_segments_grow_until_the_video_fits_max_segments() -> None:
    plan = plan_segments(10 * 3600, 10, 4, max_segments=2000, min_gap=0.5)
    assert len(plan.segments) == 2000
    assert plan.segment_seconds == pytest.approx(18.0, abs=1e-3)
    assert max(s.end - s.start for s in plan.segments) <= plan.segment_seconds + 1e-3


def test_with_scenes_long_ones_are_split_equally_and_short_ones_kept() -> None:
    scenes = [Scene(0.0, 2.0), Scene(2.0, 27.0), Scene(27.0, 30.0)]
    plan = plan_segments(30.0, 10, 2, max_segments=100, min_gap=0.5, scenes=scenes)
    assert bounds(plan) == [
        (0.0, 2.0),
        (2.0, 10.333),
        (10.333, 18.667),
        (18.667, 27.0),
        (27.0, 30.0),
    ]


def test_more_scenes_than_max_segments_are_joined_shortest_first() -> None:
    scenes = [Scene(float(i), float(i + 1)) for i in range(9)] + [Scene(9.0, 30.0)]
    plan = plan_segments(30.0, 30, 1, max_segments=4, min_gap=0.0, scenes=scenes)
    assert len(plan.segments) == 4
    assert plan.segments[-1].start == 9.0, "the long scene is kept whole"
    assert plan.segments[0].start == 0.0 and plan.segments[-1].end == 30.0


@pytest.mark.parametrize(
    ("duration", "length", "parts"), [(40.3, 10, 5), (10.01, 5, 3), (11.0, 5, 3), (10.0, 5, 2)]
)
def test_no_segment_is_longer_than_asked(duration: float, length: float, parts: int) -> None:
    # A stretch just over a whole number of lengths is split into one part more (equal
    # parts), never joined into parts over the length.
    plan = plan_segments(duration, length, 1, max_segments=100, min_gap=0.0)
    assert len(plan.segments) == parts and plan.segments[-1].end == duration
    assert all(s.end - s.start <= length + 1e-3 for s in plan.segments)
    scenes = [Scene(0.0, 4.0), Scene(4.0, 4.0 + duration)]
    with_scenes = plan_segments(
        duration + 4, length, 1, max_segments=100, min_gap=0.0, scenes=scenes
    )
    assert all(s.end - s.start <= length + 1e-3 for s in with_scenes.segments)


def test_frames_sit_at_the_centres_of_equal_slices_never_closer_than_the_gap() -> None:
    plan = plan_segments(20.0, 10, 4, max_segments=100, min_gap=0.5)
    assert plan.segments[0].frame_times == (1.25, 3.75, 6.25, 8.75)
    short = plan_segments(2.0, 2, 16, max_segments=100, min_gap=0.5)
    times = short.segments[0].frame_times
    assert len(times) == 4 and all(b - a >= 0.5 for a, b in itertools.pairwise(times))
