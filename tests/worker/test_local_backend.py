"""The local backend measures what is in the frame and describes it plainly."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

from scenecap.cli.sample import PALETTE
from worker.vision.base import CaptionedSegment, CaptionRequest, FrameImage, SegmentFrames
from worker.vision.local import LocalBackend, chapters_by_labels
from worker.vision.measure import colour_name

ROOT = Path(__file__).resolve().parents[2]


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


# A photographed face OpenCV's Haar cascade finds (scikit-image's astronaut.png, a NASA
# photograph in the public domain, downscaled to 320 x 320): drawn faces are never found.
FACE = ROOT / "tests" / "support" / "data" / "astronaut-320.jpg"


def segment_of(images: list[np.ndarray]) -> SegmentFrames:
    frames = [
        FrameImage(n, 1.0 + 2 * n, jpeg_of(image).jpeg, image.shape[1], image.shape[0])
        for n, image in enumerate(images)
    ]
    return SegmentFrames(0, 0.0, 2.0 * len(images), frames)


def captioned(segment: SegmentFrames) -> CaptionedSegment:
    request = CaptionRequest(("participants", "scene", "tags"))
    answer = asyncio.run(LocalBackend().caption_segment(segment, request))
    return CaptionedSegment(
        segment.index, segment.start, segment.end, answer.caption, answer.metadata, answer.details
    )


@pytest.mark.parametrize("faces_at", [[1], [0], [3], []])
def test_a_segment_caption_and_its_chapter_agree_on_who_is_there(faces_at: list[int]) -> None:
    """A segment whose middle frame shows no one but another frame shows a face is not
    captioned "no people detected" while its labels, and so its chapter, say there are."""
    face = cv2.imread(str(FACE))
    assert face is not None
    plain = np.full(face.shape, PALETTE["blue"], np.uint8)
    segment = captioned(segment_of([face if n in faces_at else plain for n in range(4)]))
    [chapter] = chapters_by_labels([segment])
    seen = [frame["faces"] for frame in segment.details["frames"]]
    assert [n for n, count in enumerate(seen) if count] == faces_at, "the face is found"
    someone = bool(faces_at)
    assert bool(segment.metadata["participants"]) is someone
    assert ("no people" not in segment.caption) is someone, segment.caption
    assert ("with people" in chapter.summary) is someone, chapter.summary
