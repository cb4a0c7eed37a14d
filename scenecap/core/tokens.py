"""Counting a text request's tokens before it is sent, for every request to a model (the
worker's captions and summaries, the API's answers to questions).

Text is counted at one token per three characters, more than the one per four that
tokenizers give English, so an estimate is never below what the server counts; a margin
covers the chat template's own tokens (docs/architecture.md, "Never over the context")."""

from __future__ import annotations

import math

TEMPLATE_TOKENS = 64  # role markers and image delimiters the server adds


def text_tokens(*texts: str) -> int:
    return sum(math.ceil(len(text) / 3) for text in texts)
