"""The `openai` backend: any OpenAI-compatible chat-completions server (vLLM, SGLang,
llama.cpp, Ollama, OpenAI, Animus). One request per frame, the image inline as a data URI."""

from __future__ import annotations

import asyncio
import base64
import logging
import random
import re
from collections.abc import Iterable
from typing import Any

import httpx

from scenecap.core.errors import VisionBackendUnavailable
from scenecap.core.settings import Settings
from worker.vision.base import (
    CaptionedFrame,
    CaptionedSegment,
    CaptionRequest,
    Chapter,
    ChatAnswer,
    FrameCaption,
    FrameImage,
    SegmentFrames,
    TooManyImages,
    Usage,
    VisionBackend,
)
from worker.vision.prompt import (
    CHAPTER_PROMPT,
    CONDENSE_PROMPT,
    DESCRIPTION_PROMPT,
    SYSTEM_PROMPT,
    chapter_schema,
    frame_prompt,
    frame_schema,
    parse_chapters,
    parse_frame_answer,
    segment_texts,
    summary_prompt,
)
from worker.vision.windows import shorten, windows

log = logging.getLogger(__name__)
_RETRY_STATUS = {408, 409, 425, 429, 500, 502, 503, 504}
_MAX_BACKOFF = 30.0


class OpenAIBackend(VisionBackend):
    """Chat completions over one pooled async httpx client."""

    name = "openai"

    def __init__(
        self, settings: Settings, transport: httpx.AsyncBaseTransport | None = None
    ) -> None:
        self.settings = settings
        self.max_concurrency = settings.vlm_max_concurrency
        headers = (
            {"Authorization": f"Bearer {settings.vlm_api_key}"} if settings.vlm_api_key else {}
        )
        self._client = httpx.AsyncClient(
            base_url=settings.vlm_base_url.rstrip("/") + "/",
            headers=headers,
            timeout=httpx.Timeout(settings.vlm_timeout_seconds, connect=10.0),
            limits=httpx.Limits(max_connections=settings.vlm_max_concurrency),
            trust_env=False,
            transport=transport,
        )
        # Flipped off the first time the server refuses a JSON-schema response_format.
        self._schema_supported = True

    def model_name(self, request: CaptionRequest) -> str:
        return request.model or self.settings.vlm_model

    async def caption(self, frame: FrameImage, request: CaptionRequest) -> FrameCaption:
        image_url = "data:image/jpeg;base64," + base64.b64encode(frame.jpeg).decode()
        body: dict[str, Any] = {
            "model": self.model_name(request),
            "messages": [
                {"role": "system", "content": SYSTEM_PROMPT},
                {
                    "role": "user",
                    "content": [
                        {"type": "image_url", "image_url": {"url": image_url}},
                        {
                            "type": "text",
                            "text": frame_prompt(request.metadata_types, frame.timestamp),
                        },
                    ],
                },
            ],
            "max_tokens": self.settings.caption_max_tokens,
            "temperature": self.settings.vlm_temperature,
        }
        answer, retries = await self._complete_json(body, frame_schema(request.metadata_types))
        text, usage = _content_and_usage(answer)
        caption, metadata, parsed = parse_frame_answer(text, request.metadata_types)
        return FrameCaption(caption, metadata, usage, parsed, retries=retries)

    async def caption_segment(
        self, segment: SegmentFrames, request: CaptionRequest
    ) -> FrameCaption:
        frames = segment.frames
        opening, labels, instructions = segment_texts(
            request.metadata_types,
            segment.start,
            segment.end,
            [f.timestamp for f in frames],
            segment.heard,
        )
        content: list[dict[str, Any]] = [{"type": "text", "text": opening}]
        for label, frame in zip(labels, frames, strict=True):
            image_url = "data:image/jpeg;base64," + base64.b64encode(frame.jpeg).decode()
            content += [
                {"type": "text", "text": label},
                {"type": "image_url", "image_url": {"url": image_url}},
            ]
        content.append({"type": "text", "text": instructions})
        body: dict[str, Any] = {
            "model": self.model_name(request),
            "messages": [
                {"role": "system", "content": SYSTEM_PROMPT},
                {"role": "user", "content": content},
            ],
            "max_tokens": self.settings.caption_max_tokens,
            "temperature": self.settings.vlm_temperature,
        }
        try:
            answer, retries = await self._complete_json(body, frame_schema(request.metadata_types))
        except TooManyImages as refused:
            if refused.limit >= len(frames):  # then that is not what it refuses
                raise VisionBackendUnavailable(str(refused)) from None
            raise
        text, usage = _content_and_usage(answer)
        caption, metadata, parsed = parse_frame_answer(text, request.metadata_types)
        return FrameCaption(caption, metadata, usage, parsed, retries=retries)

    async def chapters(
        self, segments: list[CaptionedSegment], request: CaptionRequest
    ) -> tuple[list[Chapter], Usage]:
        lines = [f"[{s.index}] {s.start:.1f}-{s.end:.1f} s: {s.caption}" for s in segments]
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
            text, usage = _content_and_usage(answer)
            return _checked_chapters(parse_chapters(text), [segments[i] for i in run]), usage

        done = await asyncio.gather(*(chapter_run(run) for run in runs))
        return [c for chapters, _usage in done for c in chapters], _total(u for _c, u in done)

    async def describe(
        self, chapters: list[Chapter], request: CaptionRequest, media: dict[str, Any]
    ) -> tuple[str, Usage]:
        """From the chapters; condensed window by window first while they do not fit."""
        context, answer_tokens = self.settings.vlm_context_tokens, self.settings.summary_max_tokens
        texts = [f"[{c.start:.0f}-{c.end:.0f} s] {c.title}: {c.summary}" for c in chapters]
        usage = Usage()
        while True:
            texts = [
                shorten(t, prompt=DESCRIPTION_PROMPT, context=context, max_tokens=answer_tokens)
                for t in texts
            ]
            runs = windows(
                texts, prompt=DESCRIPTION_PROMPT, context=context, max_tokens=answer_tokens
            )
            if len(runs) == 1:
                text, used = await self._text(request, DESCRIPTION_PROMPT, texts, answer_tokens)
                return text, usage + used
            condensed = await asyncio.gather(
                *(
                    self._text(request, CONDENSE_PROMPT, [texts[i] for i in run], answer_tokens)
                    for run in runs
                )
            )
            texts = [text for text, _used in condensed]
            usage = usage + _total(used for _text, used in condensed)

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
        text, usage = _content_and_usage(answer)
        return text.strip(), usage

    async def summarise(
        self, frames: list[CaptionedFrame], request: CaptionRequest, media: dict[str, Any]
    ) -> tuple[str, Usage]:
        lines = [f"[{f.timestamp:.2f}s] {f.caption}" for f in frames]
        body = {
            "model": self.model_name(request),
            "messages": [{"role": "user", "content": summary_prompt(lines)}],
            "max_tokens": self.settings.summary_max_tokens,
            "temperature": self.settings.vlm_temperature,
        }
        answer, _retries = await self._post(body)
        text, usage = _content_and_usage(answer)
        return text.strip(), usage

    async def complete(
        self,
        messages: list[dict[str, Any]],
        *,
        model: str | None,
        temperature: float,
        max_tokens: int,
    ) -> ChatAnswer:
        body = {
            "model": model or self.settings.vlm_model,
            "messages": messages,
            "temperature": temperature,
            "max_tokens": max_tokens,
        }
        answer, _retries = await self._post(body)
        text, usage = _content_and_usage(answer)
        finish = (answer.get("choices") or [{}])[0].get("finish_reason") or "stop"
        return ChatAnswer(text, str(answer.get("model") or body["model"]), usage, str(finish))

    async def aclose(self) -> None:
        await self._client.aclose()

    async def _complete_json(
        self, body: dict[str, Any], schema: dict[str, Any]
    ) -> tuple[dict[str, Any], int]:
        if self._schema_supported:
            with_schema = {
                **body,
                "response_format": {
                    "type": "json_schema",
                    "json_schema": {"name": "frame_metadata", "schema": schema, "strict": True},
                },
            }
            try:
                return await self._post(with_schema)
            except _SchemaRefused:
                log.info("VLM refused response_format json_schema; parsing answers leniently")
                self._schema_supported = False
        return await self._post(body)

    async def _post(self, body: dict[str, Any]) -> tuple[dict[str, Any], int]:
        """POST chat/completions, retrying 429/5xx/timeouts with backoff and jitter.

        Returns the answer and how many attempts failed before it.
        """
        attempts = self.settings.vlm_max_retries + 1
        for attempt in range(attempts):
            delay: float | None = None
            try:
                response = await self._client.post("chat/completions", json=body)
            except httpx.TransportError as exc:
                problem = f"{type(exc).__name__}"
            else:
                if response.is_success:
                    return response.json(), attempt
                if (
                    response.status_code in (400, 422)
                    and "response_format" in body
                    and ("response_format" in response.text or "json_schema" in response.text)
                ):
                    raise _SchemaRefused
                images = _IMAGE_LIMIT.search(response.text)
                if response.status_code in (400, 422) and images:
                    raise TooManyImages(int(images.group(1)), response.text[:200])
                if response.status_code not in _RETRY_STATUS:
                    raise VisionBackendUnavailable(
                        f"vision model answered HTTP {response.status_code}: {response.text[:200]}",
                        {"status_code": response.status_code},
                    )
                problem = f"HTTP {response.status_code}"
                delay = _retry_after(response)
            if attempt + 1 < attempts:
                backoff = min(_MAX_BACKOFF, 0.5 * 2**attempt)
                await asyncio.sleep(delay if delay is not None else random.uniform(0, backoff))
        raise VisionBackendUnavailable(
            f"vision model unavailable after {attempts} attempts (last: {problem})",
            {"attempts": attempts},
        )


class _SchemaRefused(Exception):
    """The server does not accept response_format with a JSON schema."""


# vLLM: "At most 1 image(s) may be provided in one request."; others say it much the same way.
_IMAGE_LIMIT = re.compile(r"at most (\d+) image", re.I)


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


def _total(usages: Iterable[Usage]) -> Usage:
    total = Usage()
    for usage in usages:
        total = total + usage
    return total


def _retry_after(response: httpx.Response) -> float | None:
    value = response.headers.get("retry-after", "")
    try:
        return min(_MAX_BACKOFF, max(0.0, float(value)))
    except ValueError:
        return None


def _content_and_usage(answer: dict[str, Any]) -> tuple[str, Usage]:
    try:
        content = answer["choices"][0]["message"]["content"] or ""
    except (KeyError, IndexError, TypeError) as exc:
        raise VisionBackendUnavailable("vision model answered without choices") from exc
    usage = answer.get("usage") or {}
    return str(content), Usage(
        int(usage.get("prompt_tokens") or 0), int(usage.get("completion_tokens") or 0)
    )
