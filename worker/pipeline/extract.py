"""Decode only the planned frames, resize them to the model's pixel budget, encode JPEG.

The probe's demux pass lists every frame's time, so for each planned time the extractor knows
which frame it wants before decoding anything. It seeks to the keyframe before that frame
(unless it is already decoding that keyframe's group), and while walking forward lets the
decoder skip every frame nothing refers to except the frames it wants. Once the wanted frame
is sent, the decoder is drained rather than fed further, unless the next wanted frame is in
the same group. Under the `keyframe` policy a keyframe within `tolerance` of the planned time
is taken as is, which costs one keyframe decode. Where the packets carry no times, or the
decoder disagrees with them, it decodes every frame from the keyframe instead.
"""

from __future__ import annotations

import bisect
import itertools
import math
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import av
import cv2
import numpy as np

from scenecap.errors import MediaUnreadable
from worker.pipeline.plan import PlannedFrame
from worker.pipeline.probe import Clock, Timeline, read_timeline

ExtractPolicy = Literal["exact", "keyframe"]
_EPSILON = 1e-6
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
    timeline: Timeline | None = None,
) -> Iterator[ExtractedFrame]:
    """Yield one ExtractedFrame per planned frame, in time order.

    `timeline` (from the probe) saves a demux pass; tolerance defaults to a quarter of the
    spacing between planned frames.
    """
    try:
        timeline = timeline or read_timeline(path)
        if not timeline.times:
            raise MediaUnreadable("the video has no frames")
        ordered = sorted(plan, key=lambda p: p.time)
        if tolerance is None:
            tolerance = _default_tolerance(ordered)
        targets = [
            _nearby_keyframe(timeline.keyframes, planned, tolerance)
            if policy == "keyframe"
            else None
            for planned in ordered
        ]
        times = [t if t is not None else p.time for t, p in zip(targets, ordered, strict=True)]
        with av.open(str(path)) as container, ThreadPoolExecutor(1) as encoder:
            stream = container.streams.video[0]
            stream.thread_type = "AUTO"
            cursor = _FrameCursor(container, stream, timeline)
            # Each frame is scaled and encoded on a thread (OpenCV and swscale release the
            # GIL) while the next one decodes; only one frame waits at a time.
            pending: Future[ExtractedFrame] | None = None
            for planned, (frame, timestamp) in zip(ordered, cursor.frames_at(times), strict=True):
                if pending is not None:
                    yield pending.result()
                pending = encoder.submit(
                    _encode, planned, frame, timestamp, max_pixels, jpeg_quality
                )
            if pending is not None:
                yield pending.result()
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


def _key(time: float) -> float:
    return round(time, 6)


class _FrameCursor:
    """Decodes forward from keyframes, as little as the timeline allows, for ascending times."""

    def __init__(self, container: Any, stream: Any, timeline: Timeline) -> None:
        self.container = container
        self.stream = stream
        self.timeline = timeline
        self.clock = Clock.of(stream)
        self.packets: Iterator[Any] | None = None  # None: the decoder must seek first
        self.ready: dict[float, tuple[Any, float]] = {}  # wanted frames decoded early
        self.keep: set[float] = set()

    def frames_at(self, times: list[float]) -> Iterator[tuple[Any, float]]:
        """For each time (ascending), the frame on screen then (the last one at or before it)
        and that frame's own time."""
        wanted = [self.timeline.shown_at(t) for t in times]
        self.keep = {_key(w) for w in wanted}
        guided = self.timeline.complete
        last: tuple[Any, float] | None = None
        for n, (time, frame_time) in enumerate(zip(times, wanted, strict=True)):
            if guided and last is not None and _key(last[1]) == _key(frame_time):
                yield last  # Two planned times share a frame (a very low frame rate).
                continue
            # Walking on pays only while no keyframe lies before the next wanted frame.
            carry_on = n + 1 < len(wanted) and (
                self.timeline.keyframe_before(wanted[n + 1]) <= frame_time + _EPSILON
            )
            found = self._guided(frame_time, carry_on) if guided else None
            last = found or self._every_frame(time)
            yield last

    def _guided(self, wanted: float, carry_on: bool) -> tuple[Any, float] | None:
        """Decode up to the wanted frame, skipping unreferenced frames; None if it never shows."""
        found = self.ready.pop(_key(wanted), None)
        if found is None:
            if self.packets is None:
                self._seek(wanted)
            found = self._walk_to(wanted, drain=not carry_on)
        if not carry_on:
            self.packets = None  # What the decoder holds now is of no further use.
        return found

    def _walk_to(self, wanted: float, *, drain: bool) -> tuple[Any, float] | None:
        sent = False
        while self.packets is not None:
            packet = None if sent and drain else next(self.packets, None)
            if packet is None or packet.size == 0:
                frames = self._drain()  # The end, or nothing after the wanted frame is needed.
            else:
                at = None if packet.pts is None else _key(self.clock.seconds(packet.pts))
                self._skip("DEFAULT" if at is None or at in self.keep else "NONREF")
                sent = sent or at == _key(wanted)
                frames = self.stream.decode(packet)
            found = None
            for frame in frames:
                if frame.pts is None:
                    continue
                item = (frame, self.clock.seconds(frame.pts))
                if _key(item[1]) == _key(wanted):
                    found = item
                elif item[1] > wanted and _key(item[1]) in self.keep:
                    self.ready[_key(item[1])] = item
                elif item[1] > wanted and found is None:
                    return None  # Shown after the wanted frame, which never came: distrust.
            if found is not None:
                return found
        return None

    def _every_frame(self, target: float) -> tuple[Any, float]:
        """The plain way: decode every frame from the keyframe; keep the last one in time."""
        self._seek(target)
        self._skip("DEFAULT")
        previous = None
        for packet in self.packets or ():
            for frame in self.stream.decode(packet):
                if frame.pts is None:
                    continue
                at = self.clock.seconds(frame.pts)
                if at > target + _EPSILON and previous is not None:
                    self.packets = None  # The guided walk cannot continue from here.
                    return previous
                previous = (frame, at)
        self.packets = None
        if previous is None:
            raise MediaUnreadable("the video has no decodable frames")
        return previous

    def _skip(self, frames: str) -> None:
        # Only frames that no other frame refers to may be skipped ("NONREF"), so what is
        # decoded is exactly what a full decode gives.
        if self.stream.codec_context.skip_frame != frames:
            self.stream.codec_context.skip_frame = frames

    def _seek(self, time: float) -> None:
        """Position the demuxer on the keyframe at or before `time`.

        Some demuxers seek by decode timestamp or land near rather than on a keyframe (MPEG-TS
        lands on the packet after it), so packets are read (not decoded) up to the keyframe,
        seeking further back while the landing point is past it.
        """
        keyframe = self.timeline.keyframe_before(time)
        back = 0.0
        while True:
            self.container.seek(
                self.clock.pts(keyframe - back), stream=self.stream, backward=True, any_frame=False
            )
            packets = self.container.demux(self.stream)
            if back > keyframe + 1:  # At the very start: decode whatever the file begins with.
                break
            for packet in packets:
                at = None if packet.pts is None else self.clock.seconds(packet.pts)
                if packet.is_keyframe and at is not None and at >= keyframe - _EPSILON:
                    if at <= keyframe + _EPSILON:
                        packets = itertools.chain([packet], packets)
                        self.packets, self.ready = packets, {}
                        return
                    break  # Landed past it.
            back = max(1.0, back * 2)
        self.packets, self.ready = packets, {}

    def _drain(self) -> list[Any]:
        """Send end-of-stream and collect what the decoder still holds; a seek must follow."""
        self.packets = None
        self._skip("DEFAULT")
        return list(self.stream.decode(None))


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
