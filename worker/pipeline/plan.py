"""Frame planning (pure functions): how many frames, and at which times."""

from __future__ import annotations

from dataclasses import dataclass

MAX_FRAMES = 60


@dataclass(frozen=True)
class PlannedFrame:
    """A frame to caption: its planned time and, in scene mode, the scene around it."""

    index: int
    time: float
    scene_start: float | None = None
    scene_end: float | None = None


@dataclass(frozen=True)
class Scene:
    start: float
    end: float

    @property
    def length(self) -> float:
        return self.end - self.start


def frame_count(max_frames: int, budget: int) -> int:
    """N = min(60, max_frames, budget): budget is how many captions fit the summary's context."""
    return max(1, min(MAX_FRAMES, max_frames, budget))


def plan_even(duration: float, count: int, min_gap: float) -> list[PlannedFrame]:
    """Place frames at the centres of equal slices, never closer than min_gap seconds."""
    if duration <= 0:
        return [PlannedFrame(0, 0.0)]
    if min_gap > 0 and duration / min_gap < count:
        count = max(1, int(duration / min_gap))
    step = duration / count
    return [PlannedFrame(i, round(step * (i + 0.5), 3)) for i in range(count)]


def plan_scenes(scenes: list[Scene], count: int) -> list[PlannedFrame]:
    """One frame in the middle of each scene; keep the longest `count` scenes, in time order."""
    kept = sorted(
        sorted(scenes, key=lambda s: s.length, reverse=True)[:count], key=lambda s: s.start
    )
    return [
        PlannedFrame(i, round((s.start + s.end) / 2, 3), round(s.start, 3), round(s.end, 3))
        for i, s in enumerate(kept)
    ]
