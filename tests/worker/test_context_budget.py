"""No request ever exceeds VLM_CONTEXT_TOKENS, whatever the video's length.

The fake model counts like vLLM serving Qwen2-VL (image tokens by 28-pixel patches, text
tokens from the characters) and refuses an over-long request with vLLM's own 400, which it
also records as a violation: sizing requests is our job, so a refusal is a bug, not a retry.
"""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Iterator
from typing import Any

import cv2
import numpy as np
import pytest

from scenecap.cli.sample import PALETTE
from scenecap.core.errors import VisionBackendUnavailable
from scenecap.core.media import METADATA_TYPES
from scenecap.core.settings import Settings
from tests.support.fake_vlm import FakeVLMServer
from worker.job.budget import frames_that_fit
from worker.pipeline.extract import smart_resize
from worker.vision.base import CaptionedSegment, CaptionRequest, FrameImage, SegmentFrames
from worker.vision.openai_compat import OpenAIBackend

FOUR_HOURS = 4 * 3600
REQUEST = CaptionRequest(tuple(METADATA_TYPES), None)


@pytest.fixture
def model(fake_vlm: Any) -> Iterator[Any]:
    """The fake, refusing requests over 8192 tokens as vLLM would."""
    fake_vlm.context_tokens = 8192
    yield fake_vlm


def backend_for(server: FakeVLMServer, **overrides: Any) -> OpenAIBackend:
    fields: dict[str, Any] = {
        "vision_backend": "openai",
        "vlm_base_url": server.base_url,
        "vlm_model": "fake-vlm",
        "vlm_context_tokens": 8192,
        "vlm_max_retries": 0,
    }
    settings = Settings(**(fields | overrides))
    return OpenAIBackend(settings)


def run(backend: OpenAIBackend, coroutine: Any) -> Any:
    async def go() -> Any:
        try:
            return await coroutine
        finally:
            await backend.aclose()

    return asyncio.run(go())


def frame(colour: str, width: int, height: int, at: float) -> FrameImage:
    image = np.empty((height, width, 3), np.uint8)
    image[:] = PALETTE[colour]
    # Noise, so the JPEG is as large as a real frame's.
    image += np.random.default_rng(int(at)).integers(0, 20, image.shape, dtype=np.uint8)
    ok, jpeg = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, 85])
    assert ok
    return FrameImage(0, at, jpeg.tobytes(), width, height)


@pytest.mark.parametrize("frames", [1, 4, 8])
def test_a_segment_request_fits_with_as_many_frames_as_it_holds(
    fake_vlm_server: FakeVLMServer, model: Any, frames: int
) -> None:
    backend = backend_for(fake_vlm_server)
    count, pixels = frames_that_fit(backend.settings, REQUEST.metadata_types, frames)
    assert count == frames
    height, width = smart_resize(720, 1280, max_pixels=pixels)
    start = FOUR_HOURS - 10.0  # the longest time labels a 4-hour video has
    images = [frame("green", width, height, start + i) for i in range(count)]
    answer = run(
        backend, backend.caption_segment(SegmentFrames(1439, start, start + 10, images), REQUEST)
    )
    assert answer.parsed and answer.metadata["scene"] == "green backdrop"
    [request] = model.requests
    # The budget is not met by sending thumbnails: the frames are whole (720p within
    # MAX_PIXELS), or they fill most of the room.
    whole = (height, width) == smart_resize(720, 1280, max_pixels=backend.settings.max_pixels)
    assert whole or request.prompt_tokens + request.body["max_tokens"] > 0.6 * 8192


def test_four_hours_of_segments_are_chaptered_and_described_within_the_context(
    fake_vlm_server: FakeVLMServer, model: Any
) -> None:
    backend = backend_for(fake_vlm_server, vlm_max_concurrency=8)
    colours = list(PALETTE)
    sentence = "The camera holds on the {} backdrop while a dark square slides across. "
    segments = [
        CaptionedSegment(
            i,
            i * 10.0,
            (i + 1) * 10.0,
            (sentence.format(colours[(i // 37) % len(colours)]) * 14).strip(),
            {},
        )
        for i in range(FOUR_HOURS // 10)
    ]
    chapters, usage = run(backend, backend.chapters(segments, REQUEST))
    assert len(model.requests) > 1, "1440 long captions cannot fit one request"
    assert chapters[0].first == 0 and chapters[-1].last == len(segments) - 1
    assert all(a.last + 1 == b.first for a, b in itertools.pairwise(chapters))
    assert usage.prompt_tokens > 0

    model.requests.clear()
    backend = backend_for(fake_vlm_server, vlm_context_tokens=2048, summary_max_tokens=512)
    model.context_tokens = 2048
    description, _usage = run(
        backend, backend.describe(chapters, REQUEST, {"duration": float(FOUR_HOURS)})
    )
    assert description and len(model.requests) > 1, "condensed window by window first"
    assert all(r.prompt_tokens + r.body["max_tokens"] <= 2048 for r in model.requests)


def test_a_refusal_for_length_is_not_retried(fake_vlm_server: FakeVLMServer, model: Any) -> None:
    backend = backend_for(fake_vlm_server, vlm_max_retries=3)
    messages = [{"role": "user", "content": "word " * 40_000}]
    with pytest.raises(VisionBackendUnavailable, match="HTTP 400") as refused:
        run(backend, backend.complete(messages, model=None, temperature=0.0, max_tokens=100))
    # What the server said is logged, never passed on: it may quote the request.
    assert "maximum context length" not in refused.value.message
    assert len(model.violations) == 1
    model.violations.clear()  # provoked on purpose: the completions endpoint is not sized here
