"""The embedded `local` backend: real OpenCV measurements, described in plain language.

It is not a language model and says so (model `local-cv`): it measures light, colour,
sharpness, faces (Haar cascade) and upright people (HOG), and maps those to the metadata types.
"""

from __future__ import annotations

import asyncio
import base64
import itertools
from collections import Counter
from typing import Any

import cv2
import numpy as np

from scenecap.core.errors import MediaUnreadable
from worker.vision.base import (
    CaptionedFrame,
    CaptionedSegment,
    CaptionRequest,
    Chapter,
    ChatAnswer,
    FrameCaption,
    FrameImage,
    SegmentFrames,
    Usage,
    VisionBackend,
)
from worker.vision.measure import describe, measure

MODEL_NAME = "local-cv"


class LocalBackend(VisionBackend):
    """OpenCV measurements on the CPU; no network, no model weights."""

    name = "local"
    max_concurrency = 2

    def model_name(self, request: CaptionRequest) -> str:
        return MODEL_NAME

    async def caption(self, frame: FrameImage, request: CaptionRequest) -> FrameCaption:
        # OpenCV releases the GIL, so a thread keeps the event loop free.
        return await asyncio.to_thread(self._caption, frame, request)

    def _caption(self, frame: FrameImage, request: CaptionRequest) -> FrameCaption:
        image = cv2.imdecode(np.frombuffer(frame.jpeg, np.uint8), cv2.IMREAD_COLOR)
        if image is None:
            raise MediaUnreadable(f"frame {frame.index} is not a decodable image")
        measurements = measure(image)
        caption, metadata = describe(measurements, request.metadata_types)
        return FrameCaption(caption, metadata, details=measurements.as_details())

    async def summarise(
        self,
        frames: list[CaptionedFrame],
        request: CaptionRequest,
        media: dict[str, Any],
        speech: str = "",
    ) -> tuple[str, Usage]:
        return compose_description(frames, media) + _spoken(speech), Usage()

    async def caption_segment(
        self, segment: SegmentFrames, request: CaptionRequest
    ) -> FrameCaption:
        return await asyncio.to_thread(self._caption_segment, segment, request)

    def _caption_segment(self, segment: SegmentFrames, request: CaptionRequest) -> FrameCaption:
        images: list[np.ndarray] = []
        for frame in segment.frames:
            image = cv2.imdecode(np.frombuffer(frame.jpeg, np.uint8), cv2.IMREAD_COLOR)
            if image is None:
                raise MediaUnreadable(f"a frame of segment {segment.index} is not an image")
            images.append(image)
        measured = [measure(image) for image in images]
        motion = _motion(images)
        captions = [describe(m, request.metadata_types) for m in measured]
        # The caption speaks for the segment: of a frame with people if any has them (the
        # middle one may have none, and the merged labels and the chapters would then say
        # otherwise), else of the middle frame.
        seen = [m.faces + m.people for m in measured]
        shown = seen.index(max(seen)) if max(seen) else len(captions) // 2
        first, metadata = captions[shown]
        for _caption, more in captions:
            for name, value in more.items():
                if isinstance(value, list):
                    metadata[name] = list(dict.fromkeys([*metadata[name], *value]))
        moving = (
            "nearly still" if motion < 2 else "some movement" if motion < 12 else "much movement"
        )
        caption = (
            f"Over {segment.end - segment.start:.1f} s ({counted(len(images), 'frame')}), "
            f"{moving}: {first[0].lower()}{first[1:]}"
        )
        details = {"motion": round(motion, 1), "frames": [m.as_details() for m in measured]}
        return FrameCaption(caption, metadata, details=details)

    async def chapters(
        self, segments: list[CaptionedSegment], request: CaptionRequest
    ) -> tuple[list[Chapter], Usage]:
        return chapters_by_labels(segments), Usage()

    async def describe(
        self,
        chapters: list[Chapter],
        request: CaptionRequest,
        media: dict[str, Any],
        speech: str = "",
    ) -> tuple[str, Usage]:
        duration = media.get("duration") or 0.0
        parts = "; ".join(f"{_clock(c.start)}-{_clock(c.end)} {c.title}" for c in chapters[:12])
        more = f" and {len(chapters) - 12} more" if len(chapters) > 12 else ""
        return (
            f"A {duration:.1f}-second video measured with OpenCV (local-cv, no language model) "
            f"in {counted(len(chapters), 'chapter')}: {parts}{more}.{_spoken(speech)}",
            Usage(),
        )

    async def complete(
        self,
        messages: list[dict[str, Any]],
        *,
        model: str | None,
        temperature: float,
        max_tokens: int,
    ) -> ChatAnswer:
        # No language model here: describe what was measured in each image, and say so.
        images = [
            part["image_url"]["url"]
            for message in messages
            if not isinstance(message["content"], str)
            for part in message["content"]
            if part["type"] == "image_url"
        ]
        lines = []
        for number, url in enumerate(images, start=1):
            jpeg = base64.b64decode(url.split(",", 1)[1])
            frame = FrameImage(number, 0.0, jpeg, 0, 0)
            answer = await self.caption(frame, CaptionRequest(("tags",)))
            lines.append(f"Image {number}: {answer.caption}")
        content = (
            "local-cv measured the images with OpenCV; it is not a language model and does "
            "not read the question.\n" + "\n".join(lines)
        )
        return ChatAnswer(content, MODEL_NAME)


# A chapter ends where the look of the video changes, and after this many segments anyway.
_CHAPTER_SEGMENTS = 30


def chapters_by_labels(segments: list[CaptionedSegment]) -> list[Chapter]:
    """Chapters where the setting (the scene label) or who is there (people or not) changes,
    titled from those labels."""
    chapters: list[Chapter] = []
    run: list[CaptionedSegment] = []

    def look(segment: CaptionedSegment) -> tuple[str, bool]:
        return str(segment.metadata.get("scene", "")), bool(segment.metadata.get("participants"))

    for segment in segments:
        if run and (look(segment) != look(run[0]) or len(run) >= _CHAPTER_SEGMENTS):
            chapters.append(_chapter(run))
            run = []
        run.append(segment)
    if run:
        chapters.append(_chapter(run))
    return chapters


def _chapter(run: list[CaptionedSegment]) -> Chapter:
    scene = str(run[0].metadata.get("scene") or "").strip()
    title = scene[:1].upper() + scene[1:] if scene else "Footage"
    who = "with people" if run[0].metadata.get("participants") else "no people detected"
    moving = [s.details.get("motion", 0.0) for s in run]
    summary = (
        f"{len(run)} segment{'s' if len(run) > 1 else ''} of {title.lower()}, {who}; "
        f"mean motion {sum(moving) / len(moving):.1f}."
    )
    return Chapter(run[0].index, run[-1].index, run[0].start, run[-1].end, title, summary)


def _motion(images: list[np.ndarray]) -> float:
    """Mean absolute change between consecutive frames, on a 0-255 scale."""
    small = [cv2.resize(cv2.cvtColor(i, cv2.COLOR_BGR2GRAY), (64, 36)) for i in images]
    changes = [float(cv2.absdiff(a, b).mean()) for a, b in itertools.pairwise(small)]
    return sum(changes) / len(changes) if changes else 0.0


def _spoken(speech: str) -> str:
    """No language model reads the speech here: only how much of it there is."""
    words = sum(len(line.split("] ", 1)[-1].split()) for line in speech.splitlines())
    return f" About {words} words are spoken." if words else ""


def _clock(seconds: float) -> str:
    minutes, rest = divmod(int(seconds), 60)
    return f"{minutes}:{rest:02d}"


def counted(count: int, noun: str) -> str:
    """'1 frame', '2 frames'."""
    return f"{count} {noun}{'' if count == 1 else 's'}"


def compose_description(frames: list[CaptionedFrame], media: dict[str, Any]) -> str:
    """A factual paragraph built from the per-frame measurements."""
    if not frames:
        return "No frames could be analysed."
    duration = media.get("duration") or 0.0
    size = f"{media.get('width')}x{media.get('height')}"
    opening = (
        f"A {duration:.1f}-second {size} video; {counted(len(frames), 'frame')} "
        f"{'was' if len(frames) == 1 else 'were'} measured with OpenCV (local-cv, no language "
        "model)."
        if duration
        else f"A {size} image measured with OpenCV (local-cv, no language model)."
    )
    with_people = [f.timestamp for f in frames if f.details.get("faces") or f.details.get("people")]
    people = (
        f" People were detected in {len(with_people)} of them, first at {with_people[0]:.1f} s."
        if with_people
        else " No people were detected."
    )
    colours = Counter(name for f in frames for name in f.details.get("colours", [])[:2])
    palette = ", ".join(name for name, _n in colours.most_common(3)) or "none measured"
    brightness = sum(f.details.get("brightness", 0.0) for f in frames) / len(frames)
    return f"{opening}{people} Dominant colours: {palette}; mean brightness {brightness:.0f}/255."
