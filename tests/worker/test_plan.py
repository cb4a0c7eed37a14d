"""Frame planning rules (how many frames, and where), as properties."""

from __future__ import annotations

import itertools

from hypothesis import given
from hypothesis import strategies as st

from scenecap.core.settings import Settings
from worker.pipeline.plan import Scene, frame_count, plan_even, plan_scenes

durations = st.floats(min_value=0.05, max_value=4 * 3600, allow_nan=False)
counts = st.integers(min_value=1, max_value=60)
gaps = st.floats(min_value=0.0, max_value=5.0)


class TestFrameCount:
    @given(st.integers(1, 60), st.integers(1, 10_000))
    def test_count_is_the_smallest_of_sixty_max_frames_and_budget(
        self, max_frames: int, budget: int
    ) -> None:
        assert frame_count(max_frames, budget) == min(60, max_frames, budget)

    def test_budget_caps_frames_at_sixty(self) -> None:
        assert Settings(vlm_context_tokens=32768).frame_budget >= 60
        assert frame_count(60, Settings(vlm_context_tokens=32768).frame_budget) == 60

    def test_small_context_lowers_the_budget_as_the_formula_says(self) -> None:
        settings = Settings(
            vlm_context_tokens=8192,
            caption_max_tokens=300,
            summary_prompt_tokens=1024,
            summary_max_tokens=1024,
        )
        assert settings.frame_budget == (8192 - 1024 - 1024) // 300
        assert frame_count(60, settings.frame_budget) == 20


class TestEvenPlan:
    @given(durations, counts, gaps)
    def test_frames_sit_inside_the_video_in_order(
        self, duration: float, count: int, gap: float
    ) -> None:
        plan = plan_even(duration, count, gap)
        times = [p.time for p in plan]
        assert 1 <= len(plan) <= count
        assert times == sorted(times)
        assert all(0 <= t <= duration for t in times)
        assert [p.index for p in plan] == list(range(len(plan)))

    @given(durations, counts, st.floats(min_value=0.1, max_value=5.0))
    def test_no_two_frames_closer_than_the_minimum_gap(
        self, duration: float, count: int, gap: float
    ) -> None:
        times = [p.time for p in plan_even(duration, count, gap)]
        assert all(b - a >= gap - 2e-3 for a, b in itertools.pairwise(times))

    def test_frames_are_at_slice_centres(self) -> None:
        assert [p.time for p in plan_even(60.0, 4, 0.5)] == [7.5, 22.5, 37.5, 52.5]


class TestScenePlan:
    @given(st.lists(st.floats(min_value=0.05, max_value=100), min_size=1, max_size=200), counts)
    def test_keeps_the_longest_scenes_in_time_order(self, lengths: list[float], count: int) -> None:
        scenes, start = [], 0.0
        for length in lengths:
            scenes.append(Scene(start, start + length))
            start += length
        plan = plan_scenes(scenes, count)
        assert len(plan) == min(count, len(scenes))
        assert [p.time for p in plan] == sorted(p.time for p in plan)
        assert all(p.scene_start is not None and p.scene_end is not None for p in plan)
        kept = {(p.scene_start or 0.0, p.scene_end or 0.0) for p in plan}
        shortest_kept = min(e - s for s, e in kept)
        dropped = [s for s in scenes if (round(s.start, 3), round(s.end, 3)) not in kept]
        assert all(s.length <= shortest_kept + 2e-3 for s in dropped)
        assert all((p.scene_start or 0.0) <= p.time <= (p.scene_end or 0.0) for p in plan)

    def test_a_video_without_cuts_is_one_scene_one_frame(self) -> None:
        plan = plan_scenes([Scene(0.0, 10.0)], 60)
        assert [(p.time, p.scene_start, p.scene_end) for p in plan] == [(5.0, 0.0, 10.0)]
