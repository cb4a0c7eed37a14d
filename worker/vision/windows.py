"""Packing long texts into requests that fit the model's context (pure functions)."""

from __future__ import annotations

from worker.vision.budget import fits, text_tokens


def windows(lines: list[str], *, prompt: str, context: int, max_tokens: int) -> list[list[int]]:
    """Consecutive runs of line numbers, each run fitting one request with the prompt.

    A line too long for any request on its own is still given a run of its own (the
    caller shortens it): no run is ever empty.
    """
    runs: list[list[int]] = []
    current: list[int] = []
    used = text_tokens(prompt)
    for number, line in enumerate(lines):
        cost = text_tokens(line + "\n")
        if current and not fits(context, text=used + cost, max_tokens=max_tokens):
            runs.append(current)
            current, used = [], text_tokens(prompt)
        current.append(number)
        used += cost
    if current:
        runs.append(current)
    return runs


def shorten(line: str, *, prompt: str, context: int, max_tokens: int) -> str:
    """The line, cut so a request with the prompt and this line alone fits the context."""
    room = context - max_tokens - 200 - text_tokens(prompt)
    return line[: max(0, room) * 3]
