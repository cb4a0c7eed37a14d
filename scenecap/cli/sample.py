"""Generate H.264 sample videos with known cut times (for the demo, the tests and bench/)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import av
import numpy as np

# BGR colours that the local backend and the test VLM name unambiguously.
PALETTE: dict[str, tuple[int, int, int]] = {
    "red": (40, 40, 210),
    "green": (60, 180, 60),
    "blue": (200, 90, 30),
    "yellow": (40, 210, 230),
    "purple": (160, 40, 130),
    "white": (235, 235, 235),
}


@dataclass(frozen=True)
class SampleScene:
    colour: str
    seconds: float


DEFAULT_SCENES = (
    SampleScene("red", 3.0),
    SampleScene("green", 3.0),
    SampleScene("blue", 3.0),
    SampleScene("yellow", 3.0),
)


def cut_times(scenes: Sequence[SampleScene]) -> list[float]:
    """Where the hard cuts between scenes fall, in seconds."""
    times, at = [], 0.0
    for scene in scenes[:-1]:
        at += scene.seconds
        times.append(at)
    return times


def write_sample_video(
    path: Path,
    scenes: Sequence[SampleScene] = DEFAULT_SCENES,
    *,
    width: int = 640,
    height: int = 360,
    fps: int = 30,
    gop: int = 250,
    rotation: int = 0,
) -> Path:
    """Write an H.264 MP4: one flat colour per scene with a moving square, hard cuts between."""
    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=fps)
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        stream.options = {"g": str(gop), "preset": "veryfast", "crf": "26"}
        if rotation:
            stream.set_display_rotation(rotation)
        index = 0
        for scene in scenes:
            for _ in range(round(scene.seconds * fps)):
                image = np.empty((height, width, 3), np.uint8)
                image[:] = PALETTE[scene.colour]
                # A small moving square gives the encoder and the detectors some motion.
                side = max(8, height // 10)
                x = (index * 4) % max(1, width - side)
                image[height // 2 - side // 2 : height // 2 + side // 2, x : x + side] = 20
                frame = av.VideoFrame.from_ndarray(image, format="bgr24")
                container.mux(stream.encode(frame))
                index += 1
        container.mux(stream.encode(None))
    return path
