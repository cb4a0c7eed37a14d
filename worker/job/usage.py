"""A job's `usage` (docs/api.md, "Cost controls"): built here and nowhere else."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from worker.vision.base import Usage


class Costed(Protocol):
    """A stored frame or segment: what its request cost."""

    prompt_tokens: int
    completion_tokens: int


@dataclass(frozen=True)
class JobUsage:
    """What a job cost. Fields left None are not shown: `segments` outside segment mode,
    `audio_seconds` without a transcript, the `reused_*` counts unless it reused an earlier
    job, and `frames` and `model` for a chat completion."""

    prompt_tokens: int = 0
    completion_tokens: int = 0
    frames: int | None = None
    segments: int | None = None
    model: str | None = None
    audio_seconds: float | None = None
    reused_frames: int | None = None
    reused_segments: int | None = None

    @classmethod
    def of(
        cls,
        model: str,
        rows: Sequence[Costed],
        summary: Usage,
        *,
        frames: int,
        segments: int | None = None,
    ) -> JobUsage:
        """The usage of a job's stored frames or segments and its summary."""
        return cls(
            prompt_tokens=sum(r.prompt_tokens for r in rows) + summary.prompt_tokens,
            completion_tokens=sum(r.completion_tokens for r in rows) + summary.completion_tokens,
            frames=frames,
            segments=segments,
            model=model,
        )

    @classmethod
    def reused(cls, model: str, theirs: dict[str, Any], frames: int, segments: int) -> JobUsage:
        """A job that reused an earlier one's captions: it paid nothing."""
        count = int(theirs.get("frames", frames))
        return cls(
            frames=count,
            segments=segments or None,
            model=model,
            reused_frames=count,
            reused_segments=segments,
        )

    def as_dict(self) -> dict[str, Any]:
        shown: dict[str, Any] = {
            "frames": self.frames,
            "segments": self.segments,
            "model": self.model,
            "prompt_tokens": self.prompt_tokens,
            "completion_tokens": self.completion_tokens,
            "total_tokens": self.prompt_tokens + self.completion_tokens,
            "audio_seconds": self.audio_seconds,
            "reused_frames": self.reused_frames,
            "reused_segments": self.reused_segments,
        }
        return {name: value for name, value in shown.items() if value is not None}
