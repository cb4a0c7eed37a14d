"""Decode only the planned frames, resize them to the model's pixel budget, encode JPEG.

Under the `keyframe` policy a keyframe within `tolerance` of the planned time is taken as is,
which costs one keyframe decode; every other frame is reached by a FrameCursor walking from
the keyframe before it. The wanted frames are grouped by that keyframe, and groups are shared
among decoders of their own on separate threads (FFmpeg releases the GIL while decoding, as
swscale and OpenCV do while scaling and encoding): each decoder takes the next group when it
is free, so a long walk on one does not hold the others up.
"""

from __future__ import annotations

import bisect
import itertools
import math
import os
import threading
from collections.abc import Callable, Generator, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Any, Literal

import av
import cv2
import numpy as np

from scenecap.core.errors import MediaUnreadable
from scenecap.core.settings import Settings
from worker.pipeline.cursor import FrameCursor
from worker.pipeline.plan import PlannedFrame
from worker.pipeline.probe import Timeline, pixel_aspect, read_timeline, unreadable
from worker.pipeline.sandbox import Codec

ExtractPolicy = Literal["exact", "keyframe"]
# One decoder per CPU, but no more than four: each holds its own reference frames (up to
# ~200 MB for 4K HEVC), all within DECODE_MEMORY_MB, and 60 frames gain little beyond that.
DEFAULT_DECODERS = min(4, len(os.sched_getaffinity(0)))
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


@dataclass(frozen=True)
class ExtractOptions:
    """How frames are taken and encoded: the same for categories jobs and completions."""

    max_pixels: int
    jpeg_quality: int = 85
    policy: ExtractPolicy = "keyframe"
    tolerance: float | None = None  # None: a quarter of the spacing between planned frames
    decoders: int | None = None  # None: one per CPU, at most four

    @classmethod
    def of(cls, settings: Settings) -> ExtractOptions:
        return cls(
            max_pixels=settings.frame_max_pixels,
            jpeg_quality=settings.jpeg_quality,
            policy=settings.extract_policy,
            tolerance=settings.keyframe_tolerance_seconds,
            decoders=settings.extract_decoders,
        )


def _frames_to_wire(frames: list[ExtractedFrame]) -> tuple[list[dict[str, Any]], list[bytes]]:
    described = [
        {
            "planned": [
                f.planned.index,
                f.planned.time,
                f.planned.scene_start,
                f.planned.scene_end,
            ],
            "timestamp": f.timestamp,
            "size": [f.width, f.height],
        }
        for f in frames
    ]
    return described, [blob for f in frames for blob in (f.jpeg, f.thumbnail)]


def _frames_from_wire(described: list[dict[str, Any]], blobs: list[bytes]) -> list[ExtractedFrame]:
    if len(blobs) != 2 * len(described):
        raise ValueError("a frame without its images")
    return [
        ExtractedFrame(
            PlannedFrame(
                int(d["planned"][0]), float(d["planned"][1]), d["planned"][2], d["planned"][3]
            ),
            float(d["timestamp"]),
            blobs[2 * i],
            int(d["size"][0]),
            int(d["size"][1]),
            blobs[2 * i + 1],
        )
        for i, d in enumerate(described)
    ]


# Extracted frames cross the decode sandbox's pipe as plain data and their JPEG bytes.
FRAMES: Codec[list[ExtractedFrame]] = Codec(_frames_to_wire, _frames_from_wire)


@dataclass(frozen=True)
class _Group:
    """Wanted frames that hang from one keyframe: one decoder walks them in one go."""

    indices: list[int]  # positions in the time-ordered plan
    times: list[float]


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
    options: ExtractOptions,
    timeline: Timeline | None = None,
) -> Generator[ExtractedFrame, None, None]:
    """Yield one ExtractedFrame per planned frame, in time order (`timeline`, from the probe,
    saves a demux pass). Closing the generator early stops the decoders it started."""
    try:
        timeline = timeline or read_timeline(path)
        if not timeline.times:
            raise MediaUnreadable("the video has no frames")
        ordered = sorted(plan, key=lambda p: p.time)
        tolerance = options.tolerance
        if tolerance is None:
            tolerance = _default_tolerance(ordered)
        times = [_target(timeline, planned, options.policy, tolerance) for planned in ordered]

        def encode(index: int, frame: Any, timestamp: float, aspect: Fraction) -> ExtractedFrame:
            return _encode(
                ordered[index], frame, timestamp, aspect, options.max_pixels, options.jpeg_quality
            )

        groups = _groups(timeline, times)
        if groups:  # Nothing planned (a resumed job with every frame captioned): no decoder.
            lanes = min(options.decoders or DEFAULT_DECODERS, len(groups))
            yield from _decode_in_lanes(path, timeline, groups, lanes, encode)
    except av.FFmpegError as exc:
        raise unreadable(exc, "the video could not be decoded") from exc


def _groups(timeline: Timeline, times: list[float]) -> list[_Group]:
    def hangs_from(item: tuple[int, float]) -> float:
        return timeline.keyframe_before(timeline.shown_at(item[1]))

    runs = [list(run) for _, run in itertools.groupby(enumerate(times), key=hangs_from)]
    return [_Group([i for i, _ in run], [t for _, t in run]) for run in runs]


def _decode_in_lanes(
    path: Path,
    timeline: Timeline,
    groups: list[_Group],
    lanes: int,
    encode: Callable[[int, Any, float, Fraction], ExtractedFrame],
) -> Iterator[ExtractedFrame]:
    """Yield the groups' frames in time order, each as soon as it and those before it are done.

    Only encoded frames wait here; each lane holds one decoded frame at a time.
    """
    done: dict[int, ExtractedFrame] = {}
    failed: list[BaseException] = []
    todo = iter(groups)
    changed = threading.Condition()
    stop = threading.Event()

    def lane() -> None:
        try:
            with av.open(str(path)) as container:
                stream = container.streams.video[0]
                # Lanes are the parallelism; frame threads inside each would only contend.
                stream.thread_type = "AUTO" if lanes == 1 else "NONE"
                cursor = FrameCursor(container, stream, timeline)
                aspect = pixel_aspect(stream)
                while not stop.is_set():
                    with changed:
                        group = next(todo, None)
                    if group is None:
                        return
                    frames = cursor.frames_at(group.times)
                    for index, (frame, timestamp) in zip(group.indices, frames, strict=True):
                        extracted = encode(index, frame, timestamp, aspect)
                        with changed:
                            done[index] = extracted
                            changed.notify_all()
                        if stop.is_set():
                            return
        except BaseException as exc:  # handed to the consumer, which raises it
            with changed:
                failed.append(exc)
                changed.notify_all()

    total = sum(len(group.indices) for group in groups)
    with ThreadPoolExecutor(lanes) as pool:
        for _ in range(lanes):
            pool.submit(lane)
        try:
            for index in range(total):
                with changed:
                    while index not in done and not failed:
                        changed.wait()
                    if failed:
                        raise failed[0]
                    extracted = done.pop(index)
                yield extracted
        finally:
            stop.set()  # The consumer stopped early or failed: lanes end after their frame.


def _default_tolerance(ordered: list[PlannedFrame]) -> float:
    # A quarter of the spacing between planned frames keeps keyframe picks distinct.
    if len(ordered) < 2:
        return 0.5
    spacing = min(b.time - a.time for a, b in itertools.pairwise(ordered))
    return max(0.0, spacing / 4)


def _target(
    timeline: Timeline, planned: PlannedFrame, policy: ExtractPolicy, tolerance: float
) -> float:
    """The time to decode for a planned frame: a keyframe near it when the policy allows."""
    if policy == "keyframe":
        keyframe = _nearby_keyframe(timeline.keyframes, planned, tolerance)
        if keyframe is not None:
            return keyframe
    return planned.time


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


def _encode(
    planned: PlannedFrame,
    frame: Any,
    timestamp: float,
    aspect: Fraction,
    max_pixels: int,
    quality: int,
) -> ExtractedFrame:
    rotation = int(getattr(frame, "rotation", 0) or 0) % 360
    wide = max(1, round(frame.width * aspect))  # non-square pixels: the width as shown
    shown_h, shown_w = (wide, frame.height) if rotation in (90, 270) else (frame.height, wide)
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
