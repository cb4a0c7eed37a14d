"""Scene detection split into keyframe-aligned chunks gives exactly the cuts of one pass."""

from __future__ import annotations

import itertools
from pathlib import Path

import numpy as np
import pytest

from tests.support.clips import flat, write_frames
from worker.pipeline.probe import Limits, probe_media
from worker.pipeline.scenes import (
    FRAME_SCORES,
    DetectorOptions,
    chunk_bounds,
    cuts_from_scores,
    detect_scenes,
    scenes_from_cuts,
    score_frames,
)

FPS = 30


def bordered_clip(path: Path) -> Path:
    """12 s at 30 fps, a keyframe every second: hard cuts at 4.0 s (a chunk border when chunks
    are 2 s) and 9.5 s, a one-second cross-fade from 5.5 s to 6.5 s (across the border at 6 s),
    and a moving square throughout."""
    red, blue = flat("red").astype(float), flat("blue").astype(float)
    frames = []
    for i in range(12 * FPS):
        t = i / FPS
        if t < 4.0:
            image = flat("green")
        elif t < 5.5:
            image = red.astype(np.uint8)
        elif t < 9.5:
            mix = min(1.0, (t - 5.5) / 1.0)
            image = ((1 - mix) * red + mix * blue).astype(np.uint8)
        else:
            image = flat("yellow")
        image = image.copy()
        x = (i * 4) % 280
        image[80:100, x : x + 20] = 20
        frames.append((t, image))
    options = {"g": str(FPS), "keyint_min": str(FPS), "sc_threshold": "0", "bf": "2"}
    return write_frames(path, frames, options=options)


@pytest.mark.parametrize("suffix", [".mp4", ".ts"])
@pytest.mark.parametrize("detector", ["content", "adaptive"])
def test_chunked_scores_give_the_cuts_of_one_pass(
    tmp_path: Path, suffix: str, detector: str
) -> None:
    path = bordered_clip(tmp_path / f"bordered{suffix}")
    info = probe_media(path, Limits(3600, 10**8))
    chunks = chunk_bounds(info.timeline, 2.0)
    assert len(chunks) >= 5 and any(abs(start - 4.0) < 1e-3 for start, _ in chunks)
    whole = score_frames(path)
    parts = [
        score_frames(path, start, end if n + 1 < len(chunks) else None)
        for n, (start, end) in enumerate(chunks)
    ]
    # Every frame scored exactly once, with the score one pass gives it.
    assert [p for part in parts for p in part.pts] == whole.pts
    assert [s for part in parts for s in part.scores] == pytest.approx(whole.scores)
    options = DetectorOptions(detector)  # type: ignore[arg-type]
    one_pass = detect_scenes(path, info.duration, options)
    stitched = scenes_from_cuts(cuts_from_scores(parts, options), info.duration)
    assert stitched == one_pass
    assert any(abs(scene.start - 4.0) <= 1 / FPS + 1e-3 for scene in one_pass)


def test_chunks_start_on_keyframes_and_tile_the_video(tmp_path: Path) -> None:
    path = bordered_clip(tmp_path / "bordered.mp4")
    timeline = probe_media(path, Limits(3600, 10**8)).timeline
    assert timeline is not None
    chunks = chunk_bounds(timeline, 3.0)
    assert chunks[0][0] == 0.0 and chunks[-1][1] == timeline.end
    assert all(a[1] == b[0] for a, b in itertools.pairwise(chunks))
    assert all(start in timeline.keyframes for start, _ in chunks)
    assert chunk_bounds(timeline, 60.0) == [(0.0, timeline.end)]


def test_scores_cross_the_pipe_unchanged(tmp_path: Path) -> None:
    path = bordered_clip(tmp_path / "bordered.mp4")
    scores = score_frames(path, 2.0, 4.0)
    wire, blobs = FRAME_SCORES.encode(scores)
    assert FRAME_SCORES.decode(wire, blobs) == scores
