"""The `openai` backend: any OpenAI-compatible chat-completions server (vLLM, SGLang,
llama.cpp, Ollama, OpenAI, Animus). One request per frame, or per segment with its frames in
time order (each preceded by its time), images inline as data URIs. The requests made of
text alone (chapters, the description) are in openai_text.py."""

from __future__ import annotations

import base64
import logging
import re
from typing import Any

import httpx

from scenecap.core.backoff import model_client, send_retrying
from scenecap.core.errors import VisionBackendUnavailable
from scenecap.core.settings import Settings
from worker.vision.base import (
    CaptionRequest,
    ChatAnswer,
    FrameCaption,
    FrameImage,
    SegmentFrames,
    TooManyImages,
    VisionBackend,
)
from worker.vision.openai_text import TextRequests, content_and_usage
from worker.vision.prompt import (
    SYSTEM_PROMPT,
    frame_prompt,
    frame_schema,
    parse_frame_answer,
    segment_texts,
)

log = logging.getLogger(__name__)


class OpenAIBackend(TextRequests, VisionBackend):
    """Chat completions over one pooled async httpx client."""

    name = "openai"

    def __init__(
        self, settings: Settings, transport: httpx.AsyncBaseTransport | None = None
    ) -> None:
        self.settings = settings
        self.max_concurrency = settings.vlm_max_concurrency
        self._client = model_client(
            settings.vlm_base_url,
            settings.vlm_api_key.get_secret_value(),
            timeout=settings.vlm_timeout_seconds,
            max_connections=settings.vlm_max_concurrency,
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
                            "text": frame_prompt(
                                request.metadata_types, frame.timestamp, frame.heard
                            ),
                        },
                    ],
                },
            ],
            "max_tokens": self.settings.caption_max_tokens,
            "temperature": self.settings.vlm_temperature,
        }
        answer, retries = await self._complete_json(body, frame_schema(request.metadata_types))
        text, usage = content_and_usage(answer)
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
        text, usage = content_and_usage(answer)
        caption, metadata, parsed = parse_frame_answer(text, request.metadata_types)
        return FrameCaption(caption, metadata, usage, parsed, retries=retries)

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
        text, usage = content_and_usage(answer)
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

        def refused(response: httpx.Response) -> None:
            if response.status_code not in (400, 422):
                return
            if "response_format" in body and (
                "response_format" in response.text or "json_schema" in response.text
            ):
                raise _SchemaRefused
            images = _IMAGE_LIMIT.search(response.text)
            if images:
                raise TooManyImages(int(images.group(1)), response.text[:200])

        response, retries = await send_retrying(
            lambda: self._client.post("chat/completions", json=body),
            self.settings.vlm_max_retries + 1,
            unavailable=VisionBackendUnavailable,
            server="vision model",
            refused=refused,
        )
        return response.json(), retries


class _SchemaRefused(Exception):
    """The server does not accept response_format with a JSON schema."""


# vLLM: "At most 1 image(s) may be provided in one request."; others say it much the same way.
_IMAGE_LIMIT = re.compile(r"at most (\d+) image", re.I)
