"""Scene detection: PySceneDetect's detectors fed with small frames decoded by PyAV.

Frames are scaled to ~256 px in swscale before PySceneDetect sees them (its own downscale
would convert full-size frames first), and cut times come from presentation timestamps,
which stay right on variable-frame-rate files where frame counting drifts.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable
from pathlib import Path
from typing import Literal

import av
from scenedetect import AdaptiveDetector, ContentDetector
from scenedetect.common import FrameTimecode, Timecode
from scenedetect.detector import SceneDetector

from scenecap.errors import MediaUnreadable
from worker.pipeline.plan import Scene

DetectorName = Literal["content", "adaptive"]
DETECT_WIDTH = 256


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
                    height = max(2, round(frame.height * DETECT_WIDTH / frame.width / 2) * 2)
                image = frame.to_ndarray(format="bgr24", width=DETECT_WIDTH, height=height)
                last = FrameTimecode(Timecode(frame.pts - origin, stream.time_base), fps=fps)
                cuts += [c.seconds for c in scene_detector.process_frame(last, image)]
                if on_progress is not None and duration > 0:
                    on_progress(min(1.0, last.seconds / duration))
    except av.FFmpegError as exc:
        raise MediaUnreadable(f"the video could not be decoded: {exc}") from exc
    if last is not None:
        cuts += [c.seconds for c in scene_detector.post_process(last)]
    bounds = [0.0, *sorted(c for c in cuts if 0 < c < duration), duration]
    return [Scene(round(a, 3), round(b, 3)) for a, b in itertools.pairwise(bounds) if b > a]
