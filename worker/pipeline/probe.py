"""Probe media with PyAV and enforce the limits, without trusting the container's header.

One demux pass (packets only, nothing decoded; ~30 ms a minute of 720p) measures the real
timeline: frame count, duration, whether the frame rate varies, and the keyframe times the
extractor needs. Header values are only a first guess: containers lie (edit lists, missing
frame counts, VFR files that claim a constant rate).
"""

from __future__ import annotations

import itertools
import statistics
from dataclasses import asdict, dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import Any

import av

from scenecap.errors import DurationTooLong, MediaUnreadable, NoVideoStream, ResolutionTooLarge
from scenecap.media import claimed_image_size

# A JPEG's size may sit after large EXIF or ICC segments.
_IMAGE_HEAD_BYTES = 256 * 1024


@dataclass(frozen=True)
class MediaInfo:
    """What a video (or still image) is, as measured; width and height are as displayed."""

    duration: float
    width: int
    height: int
    fps: float
    frame_count: int
    variable_fps: bool
    rotation: int
    codec: str
    has_audio: bool
    keyframes: tuple[float, ...] = field(default=(), repr=False)

    def as_dict(self) -> dict[str, Any]:
        values = asdict(self)
        del values["keyframes"]
        return {k: round(v, 3) if isinstance(v, float) else v for k, v in values.items()}


@dataclass(frozen=True)
class Limits:
    max_duration_seconds: float
    max_input_pixels: int


@dataclass(frozen=True)
class _Timeline:
    times: list[float]  # presentation times, sorted, from the stream's start
    keyframes: list[float]
    end: float  # the last frame's time plus its duration


def probe_media(path: Path, limits: Limits, *, is_image: bool = False) -> MediaInfo:
    """Measure the media and refuse what is over the limits (with the matching error)."""
    if is_image:
        with path.open("rb") as image:
            claimed = claimed_image_size(image.read(_IMAGE_HEAD_BYTES))
        if claimed is not None and claimed[0] * claimed[1] > limits.max_input_pixels:
            raise ResolutionTooLarge(
                f"the image claims {claimed[0]}x{claimed[1]} pixels; the limit is "
                f"{limits.max_input_pixels}",
                {"width": claimed[0], "height": claimed[1]},
            )
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
            codec = stream.codec_context.name
            if is_image:
                return MediaInfo(0.0, width, height, 0.0, 1, False, 0, codec, False)
            _check_duration(_header_duration(container, stream), limits)
            timeline = _scan(container, stream)
            if not timeline.times:
                raise MediaUnreadable("the video has no frames")
            duration = timeline.end
            _check_duration(duration, limits)
            rotation = _rotation(container, stream)
            if rotation in (90, 270):
                width, height = height, width
            frame_count = len(timeline.times)
            return MediaInfo(
                duration=duration,
                width=width,
                height=height,
                fps=frame_count / duration if duration > 0 else float(stream.average_rate or 0),
                frame_count=frame_count,
                variable_fps=_is_variable(timeline.times),
                rotation=rotation,
                codec=codec,
                has_audio=bool(container.streams.audio),
                keyframes=tuple(timeline.keyframes),
            )
    except (av.FFmpegError, UnicodeDecodeError) as exc:
        raise MediaUnreadable(f"the media could not be read: {exc}") from exc


def keyframe_times(path: Path) -> list[float]:
    """Presentation times of the video's keyframes, from packets alone (nothing decoded)."""
    try:
        with av.open(str(path)) as container:
            return _scan(container, container.streams.video[0]).keyframes
    except av.FFmpegError as exc:
        raise MediaUnreadable(f"the media could not be read: {exc}") from exc


def _check_duration(duration: float, limits: Limits) -> None:
    if duration > limits.max_duration_seconds:
        raise DurationTooLong(
            f"{duration:.1f} s is over the limit of {limits.max_duration_seconds:.0f} s",
            {"duration": round(duration, 3), "limit": limits.max_duration_seconds},
        )


def _header_duration(container: Any, stream: Any) -> float:
    if stream.duration is not None and stream.time_base is not None:
        return float(stream.duration * stream.time_base)
    if container.duration is not None:
        return float(Fraction(container.duration, av.time_base))
    return 0.0


def _scan(container: Any, stream: Any) -> _Timeline:
    time_base = stream.time_base or Fraction(1, 90000)
    origin = stream.start_time or 0
    times, keyframes = [], []
    end = 0.0
    for packet in container.demux(stream):
        if packet.pts is None or packet.size == 0:
            continue
        at = float((packet.pts - origin) * time_base)
        if at < -1e-6:
            continue  # Pre-roll cut by an edit list: decoded, never shown.
        times.append(at)
        if packet.is_keyframe:
            keyframes.append(at)
        end = max(end, at + float((packet.duration or 0) * time_base))
    times.sort()
    if len(times) > 1 and end <= times[-1]:
        end = times[-1] + statistics.median(b - a for a, b in itertools.pairwise(times))
    return _Timeline(times, sorted(keyframes), end)


def _is_variable(times: list[float]) -> bool:
    if len(times) < 3:
        return False
    gaps = [b - a for a, b in itertools.pairwise(times)]
    typical = statistics.median(gaps)
    # Allow timebase rounding (e.g. 1001/30000 steps stored in milliseconds).
    return max(gaps) - min(gaps) > max(0.1 * typical, 0.002)


def _rotation(container: Any, stream: Any) -> int:
    # PyAV exposes the display matrix on decoded frames only: decode the first one.
    container.seek(0, stream=stream)
    for frame in container.decode(stream):
        return int(getattr(frame, "rotation", 0) or 0) % 360
    return 0
