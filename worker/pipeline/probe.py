"""Probe media with PyAV: size, duration, frame rate, rotation, keyframes; enforce limits."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from fractions import Fraction
from pathlib import Path
from typing import Any

import av

from scenecap.errors import (
    DurationTooLong,
    MediaUnreadable,
    NoVideoStream,
    ResolutionTooLarge,
)


@dataclass(frozen=True)
class MediaInfo:
    """What the container and stream say about a video (or a still image)."""

    duration: float
    width: int
    height: int
    fps: float
    frame_count: int
    rotation: int
    codec: str
    has_audio: bool

    def as_dict(self) -> dict[str, Any]:
        return {k: round(v, 3) if isinstance(v, float) else v for k, v in asdict(self).items()}


@dataclass(frozen=True)
class Limits:
    max_duration_seconds: float
    max_input_pixels: int


def probe_media(path: Path, limits: Limits, *, is_image: bool = False) -> MediaInfo:
    """Read the media's properties without decoding it, and refuse what is over the limits."""
    try:
        with av.open(str(path), metadata_errors="ignore") as container:
            if not container.streams.video:
                raise NoVideoStream("the media has no video stream")
            stream = container.streams.video[0]
            width, height = stream.codec_context.width, stream.codec_context.height
            if width <= 0 or height <= 0:
                raise MediaUnreadable("the video stream has no frame size")
            if width * height > limits.max_input_pixels:
                raise ResolutionTooLarge(
                    f"{width}x{height} is over the limit of {limits.max_input_pixels} pixels",
                    {"width": width, "height": height, "limit": limits.max_input_pixels},
                )
            if is_image:
                return MediaInfo(0.0, width, height, 0.0, 1, 0, stream.codec_context.name, False)
            duration = _duration(container, stream)
            if duration > limits.max_duration_seconds:
                raise DurationTooLong(
                    f"{duration:.1f} s is over the limit of {limits.max_duration_seconds:.0f} s",
                    {"duration": duration, "limit": limits.max_duration_seconds},
                )
            fps = float(stream.average_rate or stream.guessed_rate or 0)
            frame_count = stream.frames or round(duration * fps)
            if duration <= 0 or frame_count <= 0:
                raise MediaUnreadable("the video has no frames (zero duration or frame rate)")
            return MediaInfo(
                duration=duration,
                width=width,
                height=height,
                fps=fps,
                frame_count=frame_count,
                rotation=_rotation(stream),
                codec=stream.codec_context.name,
                has_audio=bool(container.streams.audio),
            )
    except (av.FFmpegError, UnicodeDecodeError) as exc:
        raise MediaUnreadable(f"the media could not be read: {exc}") from exc


def _duration(container: Any, stream: Any) -> float:
    if stream.duration is not None and stream.time_base is not None:
        return float(stream.duration * stream.time_base)
    if container.duration is not None:
        return float(Fraction(container.duration, av.time_base))
    return 0.0


def _rotation(stream: Any) -> int:
    # PyAV exposes the display matrix only on decoded frames; the stream metadata is the fallback.
    rotate = stream.metadata.get("rotate")
    return int(rotate) % 360 if rotate and rotate.lstrip("-").isdigit() else 0
