"""Scene detection on clips with known cuts: hard cuts, a fade, a static shot, VFR."""

from __future__ import annotations

import itertools
from pathlib import Path
from typing import Any

import pytest

from scenecap.cli.sample import DEFAULT_SCENES, SampleScene, cut_times, write_sample_video
from tests.support.clips import constant_clip, fade_clip, vfr_cut_clip
from worker.pipeline.probe import Limits, probe_media
from worker.pipeline.scenes import DetectorOptions, detect_scenes

ONE_FRAME = 1 / 30 + 1e-3


def cuts_of(path: Path, **options: Any) -> list[float]:
    duration = probe_media(path, Limits(3600, 10**8)).duration
    found = detect_scenes(path, duration, DetectorOptions(**options))
    return [scene.start for scene in found[1:]]


@pytest.mark.parametrize("detector", ["content", "adaptive"])
def test_hard_cuts_are_found_within_one_frame(media_dir: Path, detector: str) -> None:
    found = cuts_of(media_dir / "sample.mp4", name=detector)
    truth = cut_times(DEFAULT_SCENES)
    assert len(found) == len(truth)
    assert all(abs(f - t) <= ONE_FRAME for f, t in zip(found, truth, strict=True))


def test_scenes_tile_the_whole_video(media_dir: Path) -> None:
    scenes = detect_scenes(media_dir / "sample.mp4", 12.0)
    assert scenes[0].start == 0.0 and scenes[-1].end == 12.0
    assert all(a.end == b.start for a, b in itertools.pairwise(scenes))


def test_a_static_shot_is_one_scene(tmp_path: Path) -> None:
    path = constant_clip(tmp_path / "static.mp4", ["green"], 3.0)
    scenes = detect_scenes(path, 3.0)
    assert [(s.start, s.end) for s in scenes] == [(0.0, 3.0)]


def test_a_fade_is_not_cut_into_pieces(tmp_path: Path) -> None:
    path, (start, end) = fade_clip(tmp_path / "fade.mp4")
    found = cuts_of(path)
    assert len(found) <= 1
    assert all(start - ONE_FRAME <= f <= end + ONE_FRAME for f in found)


def test_cut_time_on_a_variable_frame_rate_clip_comes_from_timestamps(tmp_path: Path) -> None:
    path, cut = vfr_cut_clip(tmp_path / "vfr.mp4")
    found = cuts_of(path, name="content")
    assert len(found) == 1
    assert abs(found[0] - cut) <= 0.1 + 1e-3  # one frame of the 10-fps part


def test_threshold_is_configurable(tmp_path: Path) -> None:
    path = write_sample_video(
        tmp_path / "soft.mp4",
        [SampleScene("red", 1.0), SampleScene("purple", 1.0)],
        width=320,
        height=180,
    )
    assert cuts_of(path, threshold=5.0) and not cuts_of(path, threshold=250.0)


def test_progress_is_reported_up_to_the_end(media_dir: Path) -> None:
    seen: list[float] = []
    detect_scenes(media_dir / "sample.mp4", 12.0, on_progress=seen.append)
    assert seen == sorted(seen) and seen[-1] >= 0.99


def test_short_shots_at_a_low_frame_rate_are_kept_and_the_shortest_scene_is_in_seconds(
    tmp_path: Path,
) -> None:
    # Three one-second shots at 10 fps: PySceneDetect's own minimum (15 frames, 1.5 s here)
    # cut none of them; the shortest scene is now counted in seconds (0.5 by default).
    path = write_sample_video(
        tmp_path / "counter.mp4",
        [SampleScene(colour, 1.0) for colour in ("red", "green", "blue")],
        width=320,
        height=180,
        fps=10,
    )
    found = cuts_of(path)
    assert len(found) == 2
    assert all(abs(f - t) <= 0.1 + 1e-3 for f, t in zip(found, (1.0, 2.0), strict=True))
    assert len(cuts_of(path, min_scene_seconds=1.5)) < len(found)
