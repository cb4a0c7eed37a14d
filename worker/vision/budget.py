"""How many tokens a request costs, counted before it is sent, and so how many pixels each
of its images may have (docs/architecture.md, "Never over the context").

Images are counted by Qwen2-VL's rule: ceil(h/28) * ceil(w/28) tokens after smart_resize.
Text is counted as scenecap.core.tokens counts it. The answer's `max_tokens` is part of the
request, and a margin covers the chat template's own tokens.
"""

from __future__ import annotations

import math
from collections.abc import Iterable

from scenecap.core.tokens import MIN_IMAGE_TOKENS, TEMPLATE_TOKENS, text_tokens

PATCH = 28


def image_tokens(width: int, height: int) -> int:
    return math.ceil(height / PATCH) * math.ceil(width / PATCH)


def request_tokens(
    texts: Iterable[str], image_sizes: Iterable[tuple[int, int]], max_tokens: int
) -> int:
    """What a request costs the model's context: its text, its images, and its answer."""
    images = sum(image_tokens(width, height) for width, height in image_sizes)
    return text_tokens(*texts) + images + max_tokens + TEMPLATE_TOKENS


def pixels_per_image(context: int, *, text: int, max_tokens: int, images: int, ceiling: int) -> int:
    """The most pixels each of `images` images may have so the request fits the context (at
    most `ceiling`, MAX_PIXELS); 0 when even the smallest images would not fit."""
    room = context - text - max_tokens - TEMPLATE_TOKENS
    per_image = room // max(1, images)
    if per_image < MIN_IMAGE_TOKENS:
        return 0
    return min(ceiling, per_image * PATCH * PATCH)


def fits(context: int, *, text: int, max_tokens: int) -> bool:
    """Whether a text-only request fits the context."""
    return text + max_tokens + TEMPLATE_TOKENS <= context
