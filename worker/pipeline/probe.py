"""Probe media with PyAV and enforce the limits, without trusting the container's header.

One demux pass (packets only, nothing decoded; ~30 ms a minute of 720p) measures the real
timeline: frame count, duration, whether the frame rate varies, and every frame's and
keyframe's time, which the extractor uses to decode only what it needs. Header values are
only a first guess: containers lie (edit lists, missing frame counts, VFR files that claim a
constant rate).
"""

from __future__ import annotations

import bisect
import itertools
import statistics
from array import array
from dataclasses import dataclass, field, fields
from fractions import Fraction
from pathlib import Path
from typing import Any

import av

from scenecap.core.errors import DurationTooLong, MediaUnreadable, NoVideoStream, ResolutionTooLarge
from scenecap.core.media import claimed_image_size
from scenecap.core.settings import Settings
from worker.pipeline.sandbox import Codec

_EPSILON = 1e-6
# A JPEG's size may sit after large EXIF or ICC segments.
_IMAGE_HEAD_BYTES = 256 * 1024


@dataclass(frozen=True)
class Timeline:
    """Presentation times (seconds from the stream's start, sorted) read from the packets."""

    times: list[float]
    keyframes: list[float]
    end: float  # the last frame's time plus its duration
    complete: bool  # every packet had a time, so `times` lists every frame

    def shown_at(self, time: float) -> float:
        """The time of the frame on screen at `time` (the first frame before the start)."""
        at = bisect.bisect_right(self.times, time + _EPSILON)
        return self.times[max(0, at - 1)]

    def keyframe_before(self, time: float) -> float:
        """The last keyframe at or before `time` (0 when there is none)."""
        at = bisect.bisect_right(self.keyframes, time + _EPSILON)
        return self.keyframes[at - 1] if at else 0.0


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
    timeline: Timeline | None = field(default=None, repr=False, compare=False)

    def as_dict(self) -> dict[str, Any]:
        values = {f.name: getattr(self, f.name) for f in fields(self) if f.name != "timeline"}
        return {k: round(v, 3) if isinstance(v, float) else v for k, v in values.items()}

    def to_wire(self) -> tuple[dict[str, Any], list[bytes]]:
        """Plain data and raw arrays, to cross the decode sandbox's pipe (no pickles)."""
        timeline = self.timeline
        value = {"info": self.as_dict(), "timeline": None}
        if timeline is None:
            return value, []
        value["timeline"] = {"end": timeline.end, "complete": timeline.complete}
        return value, [
            array("d", timeline.times).tobytes(),
            array("d", timeline.keyframes).tobytes(),
        ]

    @classmethod
    def from_wire(cls, value: dict[str, Any], blobs: list[bytes]) -> MediaInfo:
        info = value["info"]
        timeline = None
        if value["timeline"] is not None:
            times, keyframes = (array("d", blob).tolist() for blob in blobs)
            timeline = Timeline(
                times,
                keyframes,
                float(value["timeline"]["end"]),
                bool(value["timeline"]["complete"]),
            )
        return cls(
            duration=float(info["duration"]),
            width=int(info["width"]),
            height=int(info["height"]),
            fps=float(info["fps"]),
            frame_count=int(info["frame_count"]),
            variable_fps=bool(info["variable_fps"]),
            rotation=int(info["rotation"]),
            codec=str(info["codec"]),
            has_audio=bool(info["has_audio"]),
            timeline=timeline,
        )


MEDIA_INFO = Codec(MediaInfo.to_wire, MediaInfo.from_wire)


@dataclass(frozen=True)
class Limits:
    max_duration_seconds: float
    max_input_pixels: int

    @classmethod
    def of(cls, settings: Settings) -> Limits:
        return cls(settings.max_duration_seconds, settings.max_input_pixels)


def unreadable(exc: av.FFmpegError, what: str = "the media could not be read") -> MediaUnreadable:
    """FFmpeg's reason, without the file name it adds: a path of ours is no business of users."""
    return MediaUnreadable(f"{what}: {exc.strerror or type(exc).__name__}")


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
            width = max(1, round(width * pixel_aspect(stream)))  # as shown, not as stored
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
                timeline=timeline,
            )
    except av.FFmpegError as exc:
        raise unreadable(exc) from exc
    except UnicodeDecodeError as exc:
        raise MediaUnreadable("the media's metadata could not be read") from exc


def read_timeline(path: Path) -> Timeline:
    """The video's frame and keyframe times, from packets alone (nothing decoded)."""
    try:
        with av.open(str(path)) as container:
            return _scan(container, container.streams.video[0])
    except av.FFmpegError as exc:
        raise unreadable(exc) from exc


def pixel_aspect(stream: Any) -> Fraction:
    """The stream's sample (pixel) aspect ratio, 1 when the file says nothing. Anamorphic
    video (DVD, HDV, some phone modes) is stored narrower or wider than it is shown."""
    ratio = stream.sample_aspect_ratio or stream.codec_context.sample_aspect_ratio
    return Fraction(ratio) if ratio and ratio > 0 else Fraction(1)


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


@dataclass(frozen=True)
class Clock:
    """A stream's timestamps in seconds from its start. Packets and frames go through the same
    arithmetic (integer true division, correctly rounded), so their times match exactly."""

    origin: int
    numerator: int
    denominator: int

    @classmethod
    def of(cls, stream: Any) -> Clock:
        time_base = stream.time_base or Fraction(1, 90000)
        return cls(stream.start_time or 0, time_base.numerator, time_base.denominator)

    def seconds(self, pts: int) -> float:
        return (pts - self.origin) * self.numerator / self.denominator

    def pts(self, seconds: float) -> int:
        return round(seconds * self.denominator / self.numerator) + self.origin


def _scan(container: Any, stream: Any) -> Timeline:
    clock = Clock.of(stream)
    times, keyframes = [], []
    end = 0.0
    complete = True
    for packet in container.demux(stream):
        if packet.size == 0:
            continue
        if packet.pts is None:
            complete = False
            continue
        at = clock.seconds(packet.pts)
        if at < -1e-6:
            continue  # Pre-roll cut by an edit list: decoded, never shown.
        times.append(at)
        if packet.is_keyframe:
            keyframes.append(at)
        end = max(end, clock.seconds(packet.pts + (packet.duration or 0)))
    times.sort()
    if len(times) > 1 and end <= times[-1]:
        end = times[-1] + statistics.median(b - a for a, b in itertools.pairwise(times))
    return Timeline(times, sorted(keyframes), end, complete)


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
