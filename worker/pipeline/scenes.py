"""Scene detection: PySceneDetect's detectors fed with small frames decoded by PyAV.

Each decoded frame's Y, U and V planes are shrunk to ~256 px wide with OpenCV and only then
converted to BGR: converting full-size frames (what PySceneDetect's own backends and
swscale do) costs as much as decoding them. Cut times come from presentation timestamps,
which stay right on variable-frame-rate files where frame counting drifts.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable
from pathlib import Path
from typing import Literal

import av
import cv2
import numpy as np
from scenedetect import AdaptiveDetector, ContentDetector
from scenedetect.common import FrameTimecode, Timecode
from scenedetect.detector import SceneDetector

from worker.pipeline.plan import Scene
from worker.pipeline.probe import unreadable
from worker.pipeline.sandbox import Codec

DetectorName = Literal["content", "adaptive"]
DETECT_WIDTH = 256


def small_bgr(frame: av.VideoFrame, width: int, height: int) -> np.ndarray:
    """Shrink a decoded frame to width x height BGR, converting colour after shrinking."""
    if frame.format.name not in ("yuv420p", "yuvj420p"):
        return frame.to_ndarray(format="bgr24", width=width, height=height)
    y, u, v = (
        np.frombuffer(memoryview(plane), np.uint8).reshape(plane.height, plane.line_size)[
            :, : plane.width
        ]
        for plane in frame.planes
    )
    # INTER_LINEAR is what PySceneDetect's own downscale uses.
    small = [
        cv2.resize(y, (width, height), interpolation=cv2.INTER_LINEAR),
        cv2.resize(u, (width // 2, height // 2), interpolation=cv2.INTER_LINEAR),
        cv2.resize(v, (width // 2, height // 2), interpolation=cv2.INTER_LINEAR),
    ]
    i420 = np.concatenate([small[0], small[1].reshape(-1, width), small[2].reshape(-1, width)])
    return cv2.cvtColor(i420, cv2.COLOR_YUV2BGR_I420)


def make_detector(name: DetectorName, threshold: float | None) -> SceneDetector:
    if name == "adaptive":
        return (
            AdaptiveDetector()
            if threshold is None
            else AdaptiveDetector(adaptive_threshold=threshold)
        )
    return ContentDetector() if threshold is None else ContentDetector(threshold=threshold)


def detect_scenes(
    path: Path,
    duration: float,
    *,
    detector: DetectorName = "content",
    threshold: float | None = None,
    on_progress: Callable[[float], None] | None = None,
) -> list[Scene]:
    """Return the video's scenes in time order; a video without cuts is one scene."""
    scene_detector = make_detector(detector, threshold)
    cuts: list[float] = []
    last: FrameTimecode | None = None
    try:
        with av.open(str(path)) as container:
            stream = container.streams.video[0]
            stream.thread_type = "AUTO"
            fps = float(stream.average_rate or stream.guessed_rate or 30)
            origin = stream.start_time or 0
            height = None
            for frame in container.decode(stream):
                if frame.pts is None:
                    continue
                if height is None:
                    # A multiple of 4 keeps the shrunk chroma planes whole for I420.
                    height = max(4, round(frame.height * DETECT_WIDTH / frame.width / 4) * 4)
                image = small_bgr(frame, DETECT_WIDTH, height)
                last = FrameTimecode(Timecode(frame.pts - origin, stream.time_base), fps=fps)
                cuts += [c.seconds for c in scene_detector.process_frame(last, image)]
                if on_progress is not None and duration > 0:
                    on_progress(min(1.0, last.seconds / duration))
    except av.FFmpegError as exc:
        raise unreadable(exc, "the video could not be decoded") from exc
    if last is not None:
        cuts += [c.seconds for c in scene_detector.post_process(last)]
    bounds = [0.0, *sorted(c for c in cuts if 0 < c < duration), duration]
    return [Scene(round(a, 3), round(b, 3)) for a, b in itertools.pairwise(bounds) if b > a]


# Scenes cross the decode sandbox's pipe as [start, end] pairs.
SCENES: Codec[list[Scene]] = Codec(
    lambda scenes: ([[s.start, s.end] for s in scenes], []),
    lambda pairs, _blobs: [Scene(float(a), float(b)) for a, b in pairs],
)
