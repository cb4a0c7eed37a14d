"""Decode only the planned frames, resize them to the model's pixel budget, encode JPEG.

Keyframe positions come from one demux pass (no decoding). For each planned time the
decoder either keeps decoding forward or, when a keyframe lies between where it is and the
target, seeks to that keyframe: decoding from an earlier position would cost the whole gap.
Under the `keyframe` policy a keyframe within `tolerance` of the planned time is taken as is.
"""

from __future__ import annotations

import bisect
import itertools
import math
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import av
import cv2
import numpy as np

from scenecap.errors import MediaUnreadable
from worker.pipeline.plan import PlannedFrame
from worker.pipeline.probe import keyframe_times

ExtractPolicy = Literal["exact", "keyframe"]
_EPSILON = 1e-6
# Seconds before a target from which every frame is decoded again (skipping stops there).
_SKIP_MARGIN = 0.5
# The report's thumbnails: this wide, small enough to keep with the job (~5-10 KB each).
THUMBNAIL_WIDTH = 240


@dataclass(frozen=True)
class ExtractedFrame:
    """A decoded frame ready for the vision model; `timestamp` is its real presentation time."""

    planned: PlannedFrame
    timestamp: float
    jpeg: bytes
    width: int
    height: int
    thumbnail: bytes


def smart_resize(
    height: int, width: int, *, max_pixels: int, factor: int = 28, min_pixels: int = 56 * 56
) -> tuple[int, int]:
    """Qwen2-VL's smart_resize: multiples of `factor`, area within [min_pixels, max_pixels]."""
    h_bar = max(factor, round(height / factor) * factor)
    w_bar = max(factor, round(width / factor) * factor)
    if h_bar * w_bar > max_pixels:
        beta = math.sqrt(height * width / max_pixels)
        h_bar = max(factor, math.floor(height / beta / factor) * factor)
        w_bar = max(factor, math.floor(width / beta / factor) * factor)
    elif h_bar * w_bar < min_pixels:
        beta = math.sqrt(min_pixels / (height * width))
        h_bar = math.ceil(height * beta / factor) * factor
        w_bar = math.ceil(width * beta / factor) * factor
    # Rounding up a thin frame can overshoot the budget: trim its longer side.
    while h_bar * w_bar > max_pixels and max(h_bar, w_bar) > factor:
        if h_bar >= w_bar:
            h_bar -= factor
        else:
            w_bar -= factor
    return h_bar, w_bar


def image_tokens(height: int, width: int) -> int:
    """Qwen2-VL image tokens for a frame already resized by smart_resize."""
    return (height // 28) * (width // 28)


def extract_frames(
    path: Path,
    plan: list[PlannedFrame],
    *,
    max_pixels: int,
    jpeg_quality: int = 85,
    policy: ExtractPolicy = "keyframe",
    tolerance: float | None = None,
    keyframes: list[float] | None = None,
) -> Iterator[ExtractedFrame]:
    """Yield one ExtractedFrame per planned frame, in time order.

    `keyframes` (from the probe) saves a demux pass; tolerance defaults to a quarter of the
    spacing between planned frames.
    """
    try:
        keyframes = sorted(keyframes) if keyframes is not None else keyframe_times(path)
        ordered = sorted(plan, key=lambda p: p.time)
        if tolerance is None:
            tolerance = _default_tolerance(ordered)
        with av.open(str(path)) as container:
            stream = container.streams.video[0]
            stream.thread_type = "AUTO"
            cursor = _FrameCursor(container, stream, keyframes)
            for planned in ordered:
                target = planned.time
                if policy == "keyframe":
                    nearby = _nearby_keyframe(keyframes, planned, tolerance)
                    target = planned.time if nearby is None else nearby
                frame, timestamp = cursor.frame_at(target)
                yield _encode(planned, frame, timestamp, max_pixels, jpeg_quality)
    except av.FFmpegError as exc:
        raise MediaUnreadable(f"the video could not be decoded: {exc}") from exc


def _default_tolerance(ordered: list[PlannedFrame]) -> float:
    # A quarter of the spacing between planned frames keeps keyframe picks distinct.
    if len(ordered) < 2:
        return 0.5
    spacing = min(b.time - a.time for a, b in itertools.pairwise(ordered))
    return max(0.0, spacing / 4)


def _nearby_keyframe(
    keyframes: list[float], planned: PlannedFrame, tolerance: float
) -> float | None:
    at = bisect.bisect_left(keyframes, planned.time)
    candidates = [
        k for k in keyframes[max(0, at - 1) : at + 1] if abs(k - planned.time) <= tolerance
    ]
    if planned.scene_start is not None and planned.scene_end is not None:
        start, end = planned.scene_start, planned.scene_end
        candidates = [k for k in candidates if start <= k < end]
    return min(candidates, key=lambda k: abs(k - planned.time)) if candidates else None


def _origin(stream: Any) -> float:
    return float(stream.start_time * stream.time_base) if stream.start_time is not None else 0.0


class _FrameCursor:
    """A forward decoder that seeks only when a keyframe lies between it and the target."""

    def __init__(self, container: Any, stream: Any, keyframes: list[float]) -> None:
        self.container = container
        self.stream = stream
        self.keyframes = keyframes
        self.origin = _origin(stream)
        self.frames: Iterator[Any] | None = None
        self.previous: tuple[Any, float] | None = None  # last frame at or before the target
        self.pending: tuple[Any, float] | None = None  # first frame after it, not yet used

    def frame_at(self, target: float) -> tuple[Any, float]:
        """Return the frame on screen at `target` (the last one at or before it) and its time."""
        if self._should_seek(target):
            self._seek(target)
        while True:
            if self.pending is None:
                self._skip_unneeded(target)
            item = self.pending or self._next()
            self.pending = None
            if item is None:  # Past the end: the last frame stays on screen.
                if self.previous is None:
                    raise MediaUnreadable("the video has no decodable frames")
                return self.previous
            if item[1] <= target + _EPSILON:
                self.previous = item
                continue
            self.pending = item
            return self.previous or item

    def _skip_unneeded(self, target: float) -> None:
        # Far from the target, frames nothing refers to need not be decoded at all; near it
        # (allowing for the frames already queued in the decoder's threads) decode everything.
        position = self.previous[1] if self.previous else -math.inf
        skip = "NONREF" if target - position > _SKIP_MARGIN else "DEFAULT"
        if self.stream.codec_context.skip_frame != skip:
            self.stream.codec_context.skip_frame = skip

    def _should_seek(self, target: float) -> bool:
        if self.frames is None:
            return self._keyframe_before(target) > _EPSILON
        position = self.previous[1] if self.previous else -math.inf
        return target < position or self._keyframe_before(target) > position + _EPSILON

    def _keyframe_before(self, target: float) -> float:
        at = bisect.bisect_right(self.keyframes, target + _EPSILON)
        return self.keyframes[at - 1] if at else 0.0

    def _seek(self, target: float) -> None:
        offset = int((target + self.origin) / self.stream.time_base)
        self.container.seek(offset, stream=self.stream, backward=True, any_frame=False)
        self.frames = self.container.decode(self.stream)
        self.previous = self.pending = None

    def _next(self) -> tuple[Any, float] | None:
        if self.frames is None:
            self.frames = self.container.decode(self.stream)
        for frame in self.frames:
            if frame.time is not None:
                return frame, round(frame.time - self.origin, 6)
        return None


def _encode(
    planned: PlannedFrame, frame: Any, timestamp: float, max_pixels: int, quality: int
) -> ExtractedFrame:
    rotation = int(getattr(frame, "rotation", 0) or 0) % 360
    shown_h, shown_w = (
        (frame.width, frame.height) if rotation in (90, 270) else (frame.height, frame.width)
    )
    out_h, out_w = smart_resize(shown_h, shown_w, max_pixels=max_pixels)
    # Scale in swscale while converting: converting full-size frames costs as much as decoding.
    scaled_w, scaled_h = (out_h, out_w) if rotation in (90, 270) else (out_w, out_h)
    image = frame.to_ndarray(format="bgr24", width=scaled_w, height=scaled_h, interpolation="AREA")
    if rotation:
        # The display matrix turns counter-clockwise; np.rot90 with k>0 does the same.
        image = np.ascontiguousarray(np.rot90(image, k=rotation // 90))
    thumb_h = max(1, round(out_h * THUMBNAIL_WIDTH / out_w))
    thumbnail = cv2.resize(image, (THUMBNAIL_WIDTH, thumb_h), interpolation=cv2.INTER_AREA)
    return ExtractedFrame(
        planned,
        round(max(0.0, timestamp), 3),
        _jpeg(image, quality),
        out_w,
        out_h,
        _jpeg(thumbnail, 70),
    )


def _jpeg(image: np.ndarray, quality: int) -> bytes:
    ok, buffer = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, quality])
    if not ok:
        raise MediaUnreadable("a frame could not be encoded as JPEG")
    return buffer.tobytes()
