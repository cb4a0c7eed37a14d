"""Counting a text request's tokens before it is sent, for every request to a model (the
worker's captions and summaries, the API's answers to questions).

Text is counted at one token per three characters, more than the one per four that
tokenizers give English, so an estimate is never below what the server counts; a margin
covers the chat template's own tokens (docs/architecture.md, "Never over the context")."""

from __future__ import annotations

import math
from dataclasses import dataclass

from scenecap.core.settings import FRAME_PROMPT_TOKENS, Settings

TEMPLATE_TOKENS = 64  # role markers and image delimiters the server adds


def text_tokens(*texts: str) -> int:
    return sum(math.ceil(len(text) / 3) for text in texts)


# What a frame's request costs besides its image: the prompt (FRAME_PROMPT_TOKENS), the
# speech heard at its time (HEARD_MAX_CHARS at most), the answer and the template.
HEARD_MAX_CHARS = 600  # speech given with a frame or a segment is cut to this
MIN_IMAGE_TOKENS = 4  # smart_resize's floor: 56 x 56 pixels
PATCH_PIXELS = 28 * 28
# A budget keeps this many frames (or all, if fewer) and shrinks their images before it
# drops frames below it: eight small frames tell more of a video than two sharp ones.
FEWEST_FRAMES = 8


@dataclass(frozen=True)
class FrameBudget:
    """A frame-mode plan shrunk to a job's max_total_tokens (docs/api.md, "Cost controls")."""

    frames: int
    max_pixels: int
    per_frame_text: int  # each request's tokens besides its image
    reserve: int  # kept back for the summary


def image_tokens_at(pixels: int) -> int:
    """At most this many tokens for an image of `pixels` (28 x 28 patches, each side
    rounded up; aspect ratios up to about 4:1)."""
    side = math.sqrt(pixels) / 28
    return math.ceil(side * side + 2.5 * side + 1)


def pixels_for(tokens: int) -> int:
    """The most pixels whose image_tokens_at is at most `tokens` (0 if none)."""
    if tokens < MIN_IMAGE_TOKENS:
        return 0
    side = (-2.5 + math.sqrt(6.25 - 4 * (1 - tokens))) / 2
    return max(0, int((side * 28) ** 2))


def frame_budget(
    settings: Settings, cap: int, frames: int, *, heard: bool, summary: bool = True
) -> FrameBudget | None:
    """The most frames (up to `frames`), at the largest images, whose requests and the summary
    (none for an image) fit `cap` tokens by our estimates; None when not even one frame does."""
    reserve, text = _summary_and_frame_text(settings, heard=heard)
    reserve = reserve if summary else 0
    room = cap - reserve
    largest = settings.frame_max_pixels
    fit = room // (text + image_tokens_at(largest)) if room > 0 else 0
    if fit >= min(frames, FEWEST_FRAMES):
        return FrameBudget(min(frames, fit), largest, text, reserve)
    for count in range(min(frames, FEWEST_FRAMES), 0, -1):
        pixels = pixels_for(room // count - text)
        if pixels >= MIN_IMAGE_TOKENS * PATCH_PIXELS:
            return FrameBudget(count, min(largest, pixels), text, reserve)
    return None


def frame_cost(settings: Settings, *, heard: bool) -> int:
    """The most one frame's request costs: its texts, its image at full size, its answer."""
    _reserve, text = _summary_and_frame_text(settings, heard=heard)
    return text + image_tokens_at(settings.frame_max_pixels)


def frames_cost(settings: Settings, frames: int, *, heard: bool, summary: bool = True) -> int:
    """The most a frame-mode plan of `frames` frames (and its summary) costs."""
    reserve, _text = _summary_and_frame_text(settings, heard=heard)
    return frames * frame_cost(settings, heard=heard) + (reserve if summary else 0)


def least_budget(settings: Settings, *, heard: bool, summary: bool = True) -> int:
    """The smallest max_total_tokens a frame-mode job (an image: `summary` False) can be
    planned within."""
    reserve, text = _summary_and_frame_text(settings, heard=heard)
    return (reserve if summary else 0) + text + image_tokens_at(MIN_IMAGE_TOKENS * PATCH_PIXELS)


def _summary_and_frame_text(settings: Settings, *, heard: bool) -> tuple[int, int]:
    """What the summary is kept, and what a frame's request costs besides its image."""
    reserve = settings.summary_prompt_tokens + settings.summary_max_tokens + TEMPLATE_TOKENS
    text = FRAME_PROMPT_TOKENS + settings.caption_max_tokens + TEMPLATE_TOKENS
    return reserve, text + (math.ceil(HEARD_MAX_CHARS / 3) if heard else 0)
