"""Benchmark videos: testsrc2 at 720p30, H.264 (x264 veryfast, crf 26, default GOP),
with a hard cut (a 90° hue jump) every CUT_EVERY seconds. Cached under bench/.cache."""

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
    path = CACHE / f"testsrc2-720p30-{minutes}min.mp4"
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
            f"hue=h='90*floor(t/{CUT_EVERY})'",
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
