"""Scene detection: PySceneDetect's detectors fed with small frames decoded by PyAV.

Detection is two steps. `score_frames` decodes and gives each frame the detector's content
score (its difference from the frame before); `cuts_from_scores` replays those scores
through the detector, whose rolling windows and flash filter see only scores and times. A
long video is scored in keyframe-aligned chunks on many workers and replayed once, which
gives exactly the cuts of one pass: a frame's score needs only the frame before it, so each
chunk also scores the keyframe that starts the next one.

Each decoded frame's Y, U and V planes are shrunk to ~256 px wide with OpenCV and only then
converted to BGR: converting full-size frames (what PySceneDetect's own backends and
swscale do) costs as much as decoding them. Cut times come from presentation timestamps,
which stay right on variable-frame-rate files where frame counting drifts.
"""

from __future__ import annotations

import itertools
from array import array
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Any, Literal

import av
import cv2
import numpy as np
from scenedetect import AdaptiveDetector, ContentDetector
from scenedetect.common import FrameTimecode, Timecode
from scenedetect.detector import SceneDetector

from worker.pipeline.plan import Scene
from worker.pipeline.probe import Clock, Timeline, unreadable
from worker.pipeline.sandbox import Codec

DetectorName = Literal["content", "adaptive"]


@dataclass(frozen=True)
class DetectorOptions:
    """Which detector, its threshold (None: its default) and the shortest scene it may cut."""

    name: DetectorName = "content"
    threshold: float | None = None
    min_scene_seconds: float = 0.5


DETECT_WIDTH = 256
_EPSILON = 1e-6


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


def make_detector(options: DetectorOptions, fps: float, *, replay: bool = False) -> SceneDetector:
    """The detector the options name, for a video of `fps` (its shortest scene is counted in
    frames); `replay` makes one that takes each frame's score as given."""
    name = options.name
    kind: type[ContentDetector] = AdaptiveDetector if name == "adaptive" else ContentDetector
    if replay:
        kind = type(f"Replayed{kind.__name__}", (_Replayed, kind), {})
    settings: dict[str, Any] = {"min_scene_len": max(1, round(options.min_scene_seconds * fps))}
    if options.threshold is not None:
        settings["adaptive_threshold" if name == "adaptive" else "threshold"] = options.threshold
    return kind(**settings)


class _Replayed:
    """Mixed into a detector: the next frame's score is `score`, set before process_frame."""

    score = 0.0

    def _calculate_frame_score(self, timecode: FrameTimecode, frame_img: Any) -> float:
        return self.score


@dataclass(frozen=True)
class FrameScores:
    """Content scores of consecutive frames, by presentation timestamp, in the stream's clock."""

    time_base: Fraction
    origin: int
    fps: float
    pts: list[int]
    scores: list[float]


def _scores_to_wire(found: FrameScores) -> tuple[dict[str, Any], list[bytes]]:
    header = {
        "time_base": [found.time_base.numerator, found.time_base.denominator],
        "origin": found.origin,
        "fps": found.fps,
    }
    return header, [array("q", found.pts).tobytes(), array("d", found.scores).tobytes()]


def _scores_from_wire(header: dict[str, Any], blobs: list[bytes]) -> FrameScores:
    pts, scores = array("q"), array("d")
    pts.frombytes(blobs[0])
    scores.frombytes(blobs[1])
    if len(pts) != len(scores):
        raise ValueError("frame scores without their times")
    numerator, denominator = header["time_base"]
    return FrameScores(
        Fraction(int(numerator), int(denominator)),
        int(header["origin"]),
        float(header["fps"]),
        pts.tolist(),
        scores.tolist(),
    )


# Scores cross the decode sandbox's pipe, and are stored between tasks, as JSON and arrays.
FRAME_SCORES: Codec[FrameScores] = Codec(_scores_to_wire, _scores_from_wire)


def chunk_bounds(timeline: Timeline | None, chunk_seconds: float) -> list[tuple[float, float]]:
    """Keyframe-aligned spans of about `chunk_seconds`: each starts on a keyframe (the first
    at 0) and ends where the next starts (the last at the end of the video)."""
    if timeline is None or not timeline.complete or len(timeline.keyframes) < 2:
        return [(0.0, timeline.end if timeline else 0.0)]
    starts = [0.0]
    for keyframe in timeline.keyframes[1:]:
        if keyframe - starts[-1] >= chunk_seconds - _EPSILON:
            starts.append(keyframe)
    if len(starts) > 1 and timeline.end - starts[-1] < chunk_seconds / 4:
        starts.pop()  # a sliver at the end goes with the chunk before it
    return list(itertools.pairwise([*starts, timeline.end]))


def score_frames(
    path: Path,
    start: float = 0.0,
    end: float | None = None,
    *,
    on_progress: Callable[[float], None] | None = None,
) -> FrameScores:
    """Score the frames shown after `start` up to and including the one at `end` (a keyframe,
    or None for the end of the video); from the start of the video, its first frame too (score
    0, as a single pass gives it). `start` must be 0 or a keyframe's time; `on_progress` is
    told each frame's time."""
    scorer = ContentDetector()  # its scores; the detector that reads them may be another
    pts: list[int] = []
    scores: list[float] = []
    try:
        with av.open(str(path)) as container:
            stream = container.streams.video[0]
            stream.thread_type = "AUTO"
            clock = Clock.of(stream)
            fps = float(stream.average_rate or stream.guessed_rate or 30)
            height = None
            for frame, time in _frames_from(container, stream, clock, start):
                if height is None:
                    # A multiple of 4 keeps the shrunk chroma planes whole for I420.
                    height = max(4, round(frame.height * DETECT_WIDTH / frame.width / 4) * 4)
                score = scorer._calculate_frame_score(None, small_bgr(frame, DETECT_WIDTH, height))
                if start == 0.0 or time > start + _EPSILON:  # else: only the frame before
                    pts.append(int(frame.pts))
                    scores.append(float(score))
                if end is not None and time >= end - _EPSILON:
                    break
                if on_progress is not None:
                    on_progress(time)
    except av.FFmpegError as exc:
        raise unreadable(exc, "the video could not be decoded") from exc
    time_base = Fraction(clock.numerator, clock.denominator)
    return FrameScores(time_base, clock.origin, fps, pts, scores)


def _frames_from(
    container: Any, stream: Any, clock: Clock, start: float
) -> Iterator[tuple[Any, float]]:
    """Decoded frames (with their times) from the keyframe at `start` on.

    Some demuxers seek by decode timestamp or land after the keyframe (MPEG-TS): if the first
    frame decoded is not the keyframe, seek further back and decode up to it.
    """
    back = 0.0
    while True:
        if start > 0.0 and back <= start:
            container.seek(clock.pts(start - back), stream=stream, backward=True)
        frames = (
            (frame, clock.seconds(frame.pts))
            for frame in container.decode(stream)
            if frame.pts is not None
        )
        landed = None
        for frame, time in frames:
            if time >= start - _EPSILON:
                landed = (frame, time)
                break
        if start == 0.0 or back > start or (landed and landed[1] <= start + _EPSILON):
            if landed is not None:
                yield landed
                yield from frames
            return
        back = max(1.0, back * 2)


def cuts_from_scores(parts: list[FrameScores], options: DetectorOptions) -> list[float]:
    """Replay consecutive chunks' scores through a fresh detector: its cuts, in seconds."""
    fps = next((part.fps for part in parts if part.fps > 0), 1.0)
    replayed = make_detector(options, fps, replay=True)
    cuts: list[float] = []
    last: FrameTimecode | None = None
    for part in parts:
        for pts, score in zip(part.pts, part.scores, strict=True):
            last = FrameTimecode(Timecode(pts - part.origin, part.time_base), fps=part.fps)
            replayed.score = score
            cuts += [c.seconds for c in replayed.process_frame(last, None)]
    if last is not None:
        cuts += [c.seconds for c in replayed.post_process(last)]
    return cuts


def scenes_from_cuts(cuts: list[float], duration: float) -> list[Scene]:
    bounds = [0.0, *sorted(c for c in cuts if 0 < c < duration), duration]
    return [Scene(round(a, 3), round(b, 3)) for a, b in itertools.pairwise(bounds) if b > a]


def detect_scenes(
    path: Path,
    duration: float,
    options: DetectorOptions | None = None,
    *,
    on_progress: Callable[[float], None] | None = None,
) -> list[Scene]:
    """Return the video's scenes in time order (one pass); a video without cuts is one scene."""

    def progress(time: float) -> None:
        if on_progress is not None and duration > 0:
            on_progress(min(1.0, time / duration))

    scores = score_frames(path, on_progress=progress)
    cuts = cuts_from_scores([scores], options or DetectorOptions())
    return scenes_from_cuts(cuts, duration)


# Scenes cross the decode sandbox's pipe as [start, end] pairs.
SCENES: Codec[list[Scene]] = Codec(
    lambda scenes: ([[s.start, s.end] for s in scenes], []),
    lambda pairs, _blobs: [Scene(float(a), float(b)) for a, b in pairs],
)
