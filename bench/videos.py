"""Benchmark videos: testsrc2 at 720p30, H.264 (x264 veryfast, crf 26, default settings),
with a hard cut every CUT_EVERY seconds. Cached under bench/.cache.

A cut is a 90° hue jump plus a luma inversion on every other shot. A real shot change
changes luma, and x264's scenecut then starts a new GOP there, as it does for real footage;
a hue jump alone leaves luma as it was, so x264 saw no cut and the file had a keyframe only
every 250 frames, which real edited video rarely looks like."""

from __future__ import annotations

import subprocess
from pathlib import Path

import imageio_ffmpeg

CACHE = Path(__file__).parent / ".cache"
CUT_EVERY = 7


def ffmpeg() -> str:
    return str(imageio_ffmpeg.get_ffmpeg_exe())


def known_cuts(seconds: int) -> list[float]:
    return [float(t) for t in range(CUT_EVERY, seconds, CUT_EVERY)]


def ensure_video(minutes: int) -> Path:
    """Generate (once) a `minutes`-long 720p30 test video and return its path."""
    CACHE.mkdir(exist_ok=True)
    path = CACHE / f"cuts-720p30-{minutes}min.mp4"
    if path.exists():
        return path
    partial = path.with_suffix(".partial.mp4")
    subprocess.run(
        [
            ffmpeg(),
            "-hide_banner",
            "-loglevel",
            "error",
            "-y",
            "-f",
            "lavfi",
            "-i",
            f"testsrc2=size=1280x720:rate=30:duration={minutes * 60}",
            "-vf",
            f"hue=h='90*floor(t/{CUT_EVERY})',negate=enable='mod(floor(t/{CUT_EVERY}),2)'",
            "-c:v",
            "libx264",
            "-preset",
            "veryfast",
            "-crf",
            "26",
            "-pix_fmt",
            "yuv420p",
            str(partial),
        ],
        check=True,
    )
    partial.rename(path)
    return path
