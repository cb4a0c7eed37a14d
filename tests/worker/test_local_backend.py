"""The local backend measures what is in the frame and describes it plainly."""

from __future__ import annotations

import asyncio
import subprocess
import sys

import cv2
import numpy as np
import pytest

from scenecap.cli.sample import PALETTE
from worker.vision.base import CaptionRequest, FrameImage
from worker.vision.local import LocalBackend
from worker.vision.measure import colour_name


def jpeg_of(image: np.ndarray) -> FrameImage:
    ok, buffer = cv2.imencode(".jpg", image)
    assert ok
    return FrameImage(0, 1.0, buffer.tobytes(), image.shape[1], image.shape[0])


@pytest.mark.parametrize("name", ["red", "green", "blue", "yellow", "purple", "white"])
def test_palette_colours_are_named(name: str) -> None:
    assert colour_name(np.array(PALETTE[name], np.uint8)) == name


def test_flat_dark_frame_is_described_as_dark_with_no_people() -> None:
    image = np.full((240, 320, 3), 20, np.uint8)
    answer = asyncio.run(
        LocalBackend().caption(
            jpeg_of(image), CaptionRequest(("categories", "tags", "participants"))
        )
    )
    assert "dark" in answer.caption and "no people" in answer.caption
    assert "low light" in answer.metadata["categories"]
    assert answer.metadata["participants"] == []
    assert answer.details["faces"] == 0 and answer.details["brightness"] < 30


def test_only_requested_types_are_returned() -> None:
    image = np.full((120, 160, 3), PALETTE["green"], np.uint8)
    answer = asyncio.run(LocalBackend().caption(jpeg_of(image), CaptionRequest(("scene",))))
    assert set(answer.metadata) == {"scene"}
    assert "green" in answer.metadata["scene"]


def test_chat_answer_says_what_was_measured_and_that_it_is_no_language_model() -> None:
    image = np.full((120, 160, 3), PALETTE["blue"], np.uint8)
    url = "data:image/jpeg;base64," + __import__("base64").b64encode(jpeg_of(image).jpeg).decode()
    messages = [
        {
            "role": "user",
            "content": [
                {"type": "text", "text": "What is this?"},
                {"type": "image_url", "image_url": {"url": url}},
            ],
        }
    ]
    answer = asyncio.run(
        LocalBackend().complete(messages, model=None, temperature=0.1, max_tokens=50)
    )
    assert answer.model == "local-cv"
    assert "not a language model" in answer.content
    assert "Image 1:" in answer.content and "blue" in answer.content


@pytest.mark.parametrize("size", [(96, 160), (40, 30), (127, 640)])
def test_a_frame_smaller_than_the_people_detector_is_measured_not_a_crash(
    size: tuple[int, int],
) -> None:
    """OpenCV's HOG detector kills the process (SIGSEGV) on an image smaller than its 64x128
    window: a tiny video took the whole worker down. Run apart, so a crash fails only this."""
    height, width = size
    code = (
        "import numpy as np, asyncio, cv2\n"
        "from worker.vision.local import LocalBackend\n"
        "from worker.vision.base import CaptionRequest, FrameImage\n"
        f"image = np.full(({height}, {width}, 3), 120, np.uint8)\n"
        "jpeg = cv2.imencode('.jpg', image)[1].tobytes()\n"
        f"frame = FrameImage(0, 0.0, jpeg, {width}, {height})\n"
        "answer = asyncio.run(LocalBackend().caption(frame, CaptionRequest(('participants',))))\n"
        "print(answer.details['people'])\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr[-500:]
    assert done.stdout.strip() == "0"
