"""What segment-mode requests cost, counted before they are sent: how many frames of what
size a segment's request can carry (docs/architecture.md, "Never over the context"), and
how many segments a job's max_total_tokens affords (docs/api.md, "Cost controls")."""

from __future__ import annotations

import math

from scenecap.core.errors import VisionBackendUnavailable
from scenecap.core.settings import Settings
from scenecap.core.tokens import HEARD_MAX_CHARS, TEMPLATE_TOKENS, image_tokens_at
from worker.vision.budget import pixels_per_image, text_tokens
from worker.vision.prompt import (
    CHAPTER_PROMPT,
    CONDENSE_PROMPT,
    DESCRIPTION_PROMPT,
    SYSTEM_PROMPT,
    segment_texts,
)


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
