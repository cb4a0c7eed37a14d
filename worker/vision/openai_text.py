"""The `openai` backend's text-only requests: chapters, the description, the frame-mode
summary, and condensing speech. Each is sized to VLM_CONTEXT_TOKENS before it is sent
(docs/architecture.md, "Never over the context")."""

from __future__ import annotations

import asyncio
from abc import abstractmethod
from collections.abc import Iterable
from typing import Any

from scenecap.core.errors import VisionBackendUnavailable
from scenecap.core.settings import Settings
from worker.vision.base import CaptionedFrame, CaptionedSegment, CaptionRequest, Chapter, Usage
from worker.vision.budget import text_tokens
from worker.vision.prompt import (
    CHAPTER_PROMPT,
    CONDENSE_PROMPT,
    CONDENSE_SPEECH_PROMPT,
    DESCRIPTION_PROMPT,
    chapter_schema,
    parse_chapters,
    speech_block,
    summary_prompt,
)
from worker.vision.windows import shorten, windows

# Speech beside a segment's caption in a chapter request is cut to this.
_CHAPTER_HEARD_CHARS = 300


class TextRequests:
    """Mixed into the backend, which provides the HTTP side."""

    settings: Settings
    max_concurrency: int

    @abstractmethod
    def model_name(self, request: CaptionRequest) -> str: ...

    @abstractmethod
    async def _post(self, body: dict[str, Any]) -> tuple[dict[str, Any], int]: ...

    @abstractmethod
    async def _complete_json(
        self, body: dict[str, Any], schema: dict[str, Any]
    ) -> tuple[dict[str, Any], int]: ...

    async def chapters(
        self, segments: list[CaptionedSegment], request: CaptionRequest
    ) -> tuple[list[Chapter], Usage]:
        lines = [_segment_line(s) for s in segments]
        context, answer_tokens = self.settings.vlm_context_tokens, self.settings.summary_max_tokens
        lines = [
            shorten(line, prompt=CHAPTER_PROMPT, context=context, max_tokens=answer_tokens)
            for line in lines
        ]
        runs = windows(lines, prompt=CHAPTER_PROMPT, context=context, max_tokens=answer_tokens)
        limit = asyncio.Semaphore(self.max_concurrency)

        async def chapter_run(run: list[int]) -> tuple[list[Chapter], Usage]:
            body = {
                "model": self.model_name(request),
                "messages": [
                    {"role": "user", "content": CHAPTER_PROMPT + "\n".join(lines[i] for i in run)}
                ],
                "max_tokens": answer_tokens,
                "temperature": self.settings.vlm_temperature,
            }
            async with limit:
                answer, _retries = await self._complete_json(body, chapter_schema())
            text, usage = content_and_usage(answer)
            return _checked_chapters(parse_chapters(text), [segments[i] for i in run]), usage

        done = await asyncio.gather(*(chapter_run(run) for run in runs))
        return [c for chapters, _usage in done for c in chapters], total(u for _c, u in done)

    async def describe(
        self,
        chapters: list[Chapter],
        request: CaptionRequest,
        media: dict[str, Any],
        speech: str = "",
    ) -> tuple[str, Usage]:
        """From the chapters (and the speech, condensed to a third of the room); the chapters
        are condensed window by window first while they do not fit."""
        context, answer_tokens = self.settings.vlm_context_tokens, self.settings.summary_max_tokens
        said, usage = await self._fit_speech(request, speech, _speech_room(context, answer_tokens))
        prompt = DESCRIPTION_PROMPT + speech_block(said) + "\n\nThe chapters:\n"
        texts = [f"[{c.start:.0f}-{c.end:.0f} s] {c.title}: {c.summary}" for c in chapters]
        while True:
            texts = [
                shorten(t, prompt=prompt, context=context, max_tokens=answer_tokens) for t in texts
            ]
            runs = windows(texts, prompt=prompt, context=context, max_tokens=answer_tokens)
            if len(runs) == 1:
                text, used = await self._text(request, prompt, texts, answer_tokens)
                return text, usage + used
            condensed = await asyncio.gather(
                *(
                    self._text(request, CONDENSE_PROMPT, [texts[i] for i in run], answer_tokens)
                    for run in runs
                )
            )
            texts = [text for text, _used in condensed]
            usage = usage + total(used for _text, used in condensed)

    async def summarise(
        self,
        frames: list[CaptionedFrame],
        request: CaptionRequest,
        media: dict[str, Any],
        speech: str = "",
    ) -> tuple[str, Usage]:
        """From the frames' captions (FRAME_BUDGET of them fit by construction) and the speech,
        condensed into SUMMARY_PROMPT_TOKENS beside the prompt."""
        lines = [f"[{f.timestamp:.2f}s] {f.caption}" for f in frames]
        room = self.settings.summary_prompt_tokens - text_tokens(summary_prompt([], "x"))
        said, usage = await self._fit_speech(request, speech, max(0, room))
        text, used = await self._text(
            request, summary_prompt(lines, said), [], self.settings.summary_max_tokens
        )
        return text, usage + used

    async def _fit_speech(
        self, request: CaptionRequest, speech: str, room: int
    ) -> tuple[str, Usage]:
        """The speech (lines of "[time] text"), condensed window by window by the model until
        it fits `room` tokens; cut if condensing stops shrinking it."""
        usage = Usage()
        lines = speech.splitlines()
        context, answer_tokens = self.settings.vlm_context_tokens, self.settings.summary_max_tokens
        while lines and text_tokens("\n".join(lines)) > room:
            lines = [
                shorten(
                    line, prompt=CONDENSE_SPEECH_PROMPT, context=context, max_tokens=answer_tokens
                )
                for line in lines
            ]
            runs = windows(
                lines, prompt=CONDENSE_SPEECH_PROMPT, context=context, max_tokens=answer_tokens
            )
            condensed = await asyncio.gather(
                *(
                    self._text(
                        request, CONDENSE_SPEECH_PROMPT, [lines[i] for i in run], answer_tokens
                    )
                    for run in runs
                )
            )
            usage = usage + total(used for _text, used in condensed)
            shorter = [text for text, _used in condensed]
            if text_tokens("\n".join(shorter)) >= text_tokens("\n".join(lines)):
                return "\n".join(lines)[: room * 3], usage  # it no longer shrinks: cut it
            lines = shorter
        return "\n".join(lines), usage

    async def _text(
        self, request: CaptionRequest, prompt: str, lines: list[str], max_tokens: int
    ) -> tuple[str, Usage]:
        body = {
            "model": self.model_name(request),
            "messages": [{"role": "user", "content": prompt + "\n".join(lines)}],
            "max_tokens": max_tokens,
            "temperature": self.settings.vlm_temperature,
        }
        answer, _retries = await self._post(body)
        text, usage = content_and_usage(answer)
        return text.strip(), usage


def _speech_room(context: int, answer_tokens: int) -> int:
    """Speech gets a third of what a text request has room for."""
    room = context - answer_tokens - text_tokens(DESCRIPTION_PROMPT) - 200
    return max(0, room // 3)


def _segment_line(segment: CaptionedSegment) -> str:
    line = f"[{segment.index}] {segment.start:.1f}-{segment.end:.1f} s: {segment.caption}"
    if segment.heard:
        line += f' (said: "{segment.heard[:_CHAPTER_HEARD_CHARS]}")'
    return line


def _checked_chapters(found: list[dict[str, Any]], run: list[CaptionedSegment]) -> list[Chapter]:
    """The model's chapters if they cover the run exactly, in order; else one for the run."""
    first, last = run[0].index, run[-1].index
    by_index = {s.index: s for s in run}
    expected, chapters = first, []
    for item in found:
        start, end = item.get("first"), item.get("last")
        if not (
            isinstance(start, int) and isinstance(end, int) and start == expected <= end <= last
        ):
            break
        title = str(item.get("title") or "").strip()[:200] or f"Segments {start}-{end}"
        summary = str(item.get("summary") or "").strip()[:2000]
        chapters.append(
            Chapter(start, end, by_index[start].start, by_index[end].end, title, summary)
        )
        expected = end + 1
    if expected == last + 1:
        return chapters
    summary = run[0].caption if len(run) == 1 else f"{run[0].caption} ... {run[-1].caption}"
    return [Chapter(first, last, run[0].start, run[-1].end, f"Segments {first}-{last}", summary)]


def total(usages: Iterable[Usage]) -> Usage:
    summed = Usage()
    for usage in usages:
        summed = summed + usage
    return summed


def content_and_usage(answer: dict[str, Any]) -> tuple[str, Usage]:
    try:
        content = answer["choices"][0]["message"]["content"] or ""
    except (KeyError, IndexError, TypeError) as exc:
        raise VisionBackendUnavailable("vision model answered without choices") from exc
    usage = answer.get("usage") or {}
    return str(content), Usage(
        int(usage.get("prompt_tokens") or 0), int(usage.get("completion_tokens") or 0)
    )
