"""The vision backend interface and the values that cross it."""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import Any

FrameMetadata = dict[str, Any]  # "scene": str; the other types: list[str]


@dataclass(frozen=True)
class FrameImage:
    """One JPEG frame sent to a backend."""

    index: int
    timestamp: float
    jpeg: bytes
    width: int
    height: int
    heard: str = ""  # speech at that moment, if the job has a transcript


@dataclass(frozen=True)
class CaptionRequest:
    """What the client asked for: these metadata types, optionally from a given model."""

    metadata_types: tuple[str, ...]
    model: str | None = None


@dataclass
class Usage:
    prompt_tokens: int = 0
    completion_tokens: int = 0

    def __add__(self, other: Usage) -> Usage:
        return Usage(
            self.prompt_tokens + other.prompt_tokens,
            self.completion_tokens + other.completion_tokens,
        )


@dataclass(frozen=True)
class FrameCaption:
    """A backend's answer for one frame; `parsed` is False when its metadata was unreadable."""

    caption: str
    metadata: FrameMetadata
    usage: Usage = field(default_factory=Usage)
    parsed: bool = True
    details: dict[str, Any] = field(default_factory=dict)  # backend measurements, if any
    retries: int = 0  # failed attempts before this answer (429s, 5xx, timeouts)


@dataclass(frozen=True)
class CaptionedFrame:
    """A stored frame as the summary sees it."""

    index: int
    timestamp: float
    caption: str
    metadata: FrameMetadata
    details: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class SegmentFrames:
    """A segment's frames in time order, for one request (and what was heard meanwhile)."""

    index: int
    start: float
    end: float
    frames: list[FrameImage]
    heard: str = ""


@dataclass(frozen=True)
class CaptionedSegment:
    """A stored segment as the chapters see it."""

    index: int
    start: float
    end: float
    caption: str
    metadata: FrameMetadata
    details: dict[str, Any] = field(default_factory=dict)
    frame_times: tuple[float, ...] = ()
    heard: str = ""  # speech during the segment, if the job has a transcript


@dataclass(frozen=True)
class Chapter:
    """Consecutive segments first..last (inclusive) under one title."""

    first: int
    last: int
    start: float
    end: float
    title: str
    summary: str


class TooManyImages(Exception):
    """The model's server takes at most `limit` images in one request."""

    def __init__(self, limit: int, message: str) -> None:
        super().__init__(message)
        self.limit = limit


@dataclass(frozen=True)
class ChatAnswer:
    """A backend's reply to a chat completion."""

    content: str
    model: str
    usage: Usage = field(default_factory=Usage)
    finish_reason: str = "stop"


class VisionBackend(ABC):
    """Captions frames and segments, and summarises a video from its captions."""

    name: str
    max_concurrency: int = 1

    @abstractmethod
    def model_name(self, request: CaptionRequest) -> str:
        """The model label reported in results and usage."""

    @abstractmethod
    async def caption(self, frame: FrameImage, request: CaptionRequest) -> FrameCaption:
        """Describe one frame with the requested metadata types."""

    @abstractmethod
    async def summarise(
        self,
        frames: list[CaptionedFrame],
        request: CaptionRequest,
        media: dict[str, Any],
        speech: str = "",
    ) -> tuple[str, Usage]:
        """Write one paragraph about the whole video from its timestamped frames (and what
        is said in it, condensed to fit)."""

    @abstractmethod
    async def caption_segment(
        self, segment: SegmentFrames, request: CaptionRequest
    ) -> FrameCaption:
        """Describe what happens during a segment, from its frames, with the metadata types.

        Raises TooManyImages if the server refuses that many images in one request."""

    @abstractmethod
    async def chapters(
        self, segments: list[CaptionedSegment], request: CaptionRequest
    ) -> tuple[list[Chapter], Usage]:
        """Group every segment, in order, into chapters with a title and a summary each."""

    @abstractmethod
    async def describe(
        self,
        chapters: list[Chapter],
        request: CaptionRequest,
        media: dict[str, Any],
        speech: str = "",
    ) -> tuple[str, Usage]:
        """One paragraph about the whole video, from its chapters (and what is said in it,
        condensed to fit)."""

    @abstractmethod
    async def complete(
        self,
        messages: list[dict[str, Any]],
        *,
        model: str | None,
        temperature: float,
        max_tokens: int,
    ) -> ChatAnswer:
        """Answer a chat whose images are inline JPEG data URIs."""

    async def aclose(self) -> None:
        """Release connections; the default backend holds none."""
        return None
