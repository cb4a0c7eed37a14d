"""A job's tokens: what its requests cost, counted before they are sent, and the line its
cap holds while it runs (docs/api.md, "Cost controls"; docs/architecture.md, "Never over the
context"). Frame mode's estimates are in scenecap.core.tokens, which the API's submit check
shares; the pixel rule for one image is worker/vision/budget.py's.

**The cap**: a job's max_total_tokens, or what the key's daily quota reserved for it if less.
Under a quota, the job reserved the least a job costs when it was submitted; once its media
is probed it reserves its plan's estimate (`reserve_plan`), or what the quota has left, and
its plan shrinks to that. The plan was shrunk to fit by our estimates; `Spend` holds the line
against what the model reports.

Before a request is sent its estimate is held on the job's row, and only if what
was reported so far, what is held for requests in flight, its estimate and what is kept back
for the summary fit the cap (every task of a job locks the same row). When the answer comes
back, the hold becomes what the model reported. A request that does not fit is not sent: the
frame or segment is left out and the results say `partial`.

**Segment mode's estimates**: how many frames of what size a segment's request can carry,
and how many segments a cap affords.
"""

from __future__ import annotations

import math
import uuid
from dataclasses import dataclass, replace

from sqlalchemy.orm import Session

from db import reuse, spend, work
from scenecap.core.errors import QuotaExceeded, VisionBackendUnavailable
from scenecap.core.settings import Settings
from scenecap.core.tokens import HEARD_MAX_CHARS, TEMPLATE_TOKENS, image_tokens_at
from worker.job.spec import JobSpec
from worker.runtime import Runtime
from worker.vision.budget import pixels_per_image, text_tokens
from worker.vision.prompt import (
    CHAPTER_PROMPT,
    CONDENSE_PROMPT,
    DESCRIPTION_PROMPT,
    SYSTEM_PROMPT,
    segment_texts,
)


def reserve_plan(rt: Runtime, spec: JobSpec, estimate: int, least: int) -> JobSpec:
    """The spec with its reservation made its plan's `estimate` (or what the key's quota has
    left); unchanged for a job outside any quota. QUOTA_EXCEEDED if not even `least` is left."""
    if not spec.under_quota:
        return spec
    with rt.session_factory.begin() as session:
        return reserved_spec(session, spec, estimate, least)


def reserved_spec(session: Session, spec: JobSpec, estimate: int, least: int) -> JobSpec:
    """reserve_plan in the caller's transaction. A plan cut short by the quota is never
    offered for reuse to a later job, which may have room for all of it."""
    reserved = spend.reserve_plan(session, spec.id, spec.api_key_id, estimate)
    if reserved is not None and reserved < least:
        raise QuotaExceeded("the key's daily token quota has no room left for this job")
    if reserved is not None and reserved < estimate:
        reuse.forget(session, spec.id)
    return replace(spec, tokens_reserved=reserved)


@dataclass(frozen=True)
class Spend:
    """Spending against a job's token cap, with what is kept for its summary."""

    job_id: uuid.UUID
    reserve: int

    def hold(self, rt: Runtime, estimate: int) -> bool:
        """Hold `estimate` tokens for a request about to be sent; False if it would pass."""
        with rt.session_factory.begin() as session:
            return work.hold_tokens(session, self.job_id, estimate, self.reserve)

    def settle(self, rt: Runtime, estimate: int, reported: int) -> None:
        """A request held with `estimate` came back having cost `reported` tokens (a failed
        one: pass its estimate, it may have cost that)."""
        with rt.session_factory.begin() as session:
            work.settle_tokens(session, self.job_id, estimate, reported)

    def summary_fits(self, rt: Runtime) -> bool:
        """Whether the summary, at its reserve, still fits beside what was spent."""
        with rt.session_factory.begin() as session:
            return work.tokens_fit(session, self.job_id, self.reserve)


def summary_fits(rt: Runtime, spec: JobSpec, reserve: int) -> bool:
    """Whether a job's summary, estimated at `reserve` tokens, fits its cap (always, uncapped)."""
    return spec.token_cap is None or Spend(spec.id, reserve).summary_fits(rt)


def segment_pixels(
    settings: Settings, metadata_types: tuple[str, ...], frames: int, *, heard: bool = False
) -> int:
    """The most pixels each of a segment's frames may have so its request fits the context
    (0 if even the smallest would not). Texts are measured at their longest: times of five
    digits, and the most speech a request carries when the job has a transcript."""
    speech = "x" * HEARD_MAX_CHARS if heard else ""
    opening, labels, instructions = segment_texts(
        metadata_types, 99999.99, 99999.99, [99999.99] * frames, speech
    )
    return pixels_per_image(
        settings.vlm_context_tokens,
        text=text_tokens(SYSTEM_PROMPT, opening, *labels, instructions),
        max_tokens=settings.caption_max_tokens,
        images=frames,
        ceiling=settings.max_pixels,
    )


def frames_that_fit(
    settings: Settings, metadata_types: tuple[str, ...], wanted: int, *, heard: bool = False
) -> tuple[int, int]:
    """How many frames a segment request can carry (at most `wanted`), and their pixels."""
    for count in range(wanted, 0, -1):
        pixels = segment_pixels(settings, metadata_types, count, heard=heard)
        if pixels:
            return count, pixels
    raise VisionBackendUnavailable(
        "VLM_CONTEXT_TOKENS cannot hold one frame with the caption prompt and CAPTION_MAX_TOKENS"
    )


def request_shape(spec: JobSpec, settings: Settings) -> tuple[int, int]:
    """How many frames each of the job's segment requests carries, and their pixels: its
    frames_per_segment, within what a request may hold (VLM_MAX_IMAGES_PER_REQUEST, or less
    once the model's server said so) and what the context fits."""
    cap = min(
        spec.image_cap or settings.vlm_max_images_per_request, settings.vlm_max_images_per_request
    )
    wanted = min(spec.frames_per_segment, cap)
    return frames_that_fit(settings, spec.metadata_types, wanted, heard=spec.wants_transcript)


def segment_cost(
    settings: Settings, metadata_types: tuple[str, ...], frames: int, pixels: int, *, heard: bool
) -> int:
    """The most one segment's request costs: its longest texts, its images, its answer."""
    speech = "x" * HEARD_MAX_CHARS if heard else ""
    opening, labels, instructions = segment_texts(
        metadata_types, 99999.99, 99999.99, [99999.99] * frames, speech
    )
    text = text_tokens(SYSTEM_PROMPT, opening, *labels, instructions)
    return text + settings.caption_max_tokens + TEMPLATE_TOKENS + frames * image_tokens_at(pixels)


def summary_cost(settings: Settings, segments: int, *, heard: bool) -> tuple[int, int]:
    """The most the chapters and the description of `segments` segments cost, by our
    estimates: each segment's line at its longest (a caption of CAPTION_MAX_TOKENS, the speech
    beside it), the windows they fill, each window's answer; the description reads the
    chapters (condensed once at most, as the chapters' text is one answer per window)."""
    line = math.ceil(settings.caption_max_tokens * 4 / 3) + 40 + (100 if heard else 0)
    answer = settings.summary_max_tokens
    chapter_prompt = text_tokens(CHAPTER_PROMPT) + answer + TEMPLATE_TOKENS
    per_window = max(1, (settings.vlm_context_tokens - chapter_prompt) // line)
    windows = math.ceil(segments / per_window)
    chapters = segments * line + windows * chapter_prompt
    read = windows * math.ceil(answer * 4 / 3)
    speech = settings.vlm_context_tokens // 3 if heard else 0
    describe = text_tokens(DESCRIPTION_PROMPT, CONDENSE_PROMPT) + 2 * (answer + TEMPLATE_TOKENS)
    return chapters, 2 * read + describe + speech


def segments_within(
    settings: Settings,
    cap: int,
    metadata_types: tuple[str, ...],
    frames: int,
    pixels: int,
    *,
    heard: bool,
) -> int:
    """The most segments whose requests and summary fit `cap` tokens (0: not even one)."""
    each = segment_cost(settings, metadata_types, frames, pixels, heard=heard)
    low, high = 0, max(1, cap // each)
    while low < high:  # the most n with n segments and their summary within the cap
        n = (low + high + 1) // 2
        if n * each + sum(summary_cost(settings, n, heard=heard)) <= cap:
            low = n
        else:
            high = n - 1
    return low
