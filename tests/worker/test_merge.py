"""Merging per-frame answers into timestamped results (deterministic)."""

from __future__ import annotations

import pytest

from worker.pipeline.merge import build_results, merge_type, normalise_name
from worker.vision.base import CaptionedFrame


@pytest.mark.parametrize(
    ("raw", "normal"),
    [
        ("Dogs", "dog"),
        ("  Red   Cars. ", "red car"),
        ("boxes", "box"),
        ("cities", "city"),
        ("glass", "glass"),
        ("news", "news"),
        ("bus", "bus"),
        ("people", "people"),
        ("", ""),
    ],
)
def test_names_are_normalised(raw: str, normal: str) -> None:
    assert normalise_name(raw) == normal


def frame(index: int, timestamp: float, **metadata: object) -> CaptionedFrame:
    return CaptionedFrame(index, timestamp, f"frame {index}", dict(metadata))


class TestMerge:
    def test_counts_each_name_once_per_frame_with_its_timestamps(self) -> None:
        frames = [
            frame(0, 1.0, tags=["Dog", "dogs", "ball"]),
            frame(1, 2.0, tags=["dog", "cat"]),
            frame(2, 3.0, tags=["dog"]),
        ]
        assert merge_type(frames, "tags") == [
            {"name": "dog", "count": 3, "timestamps": [1.0, 2.0, 3.0]},
            {"name": "ball", "count": 1, "timestamps": [1.0]},
            {"name": "cat", "count": 1, "timestamps": [2.0]},
        ]

    def test_ties_are_broken_by_first_appearance_then_name(self) -> None:
        frames = [frame(0, 1.0, tags=["zebra"]), frame(1, 2.0, tags=["bee", "ant"])]
        assert [item["name"] for item in merge_type(frames, "tags")] == ["zebra", "ant", "bee"]

    def test_scene_strings_merge_like_lists(self) -> None:
        frames = [
            frame(0, 1.0, scene="Kitchen"),
            frame(1, 2.0, scene="kitchen "),
            frame(2, 3.0, scene=""),
        ]
        assert merge_type(frames, "scene") == [
            {"name": "kitchen", "count": 2, "timestamps": [1.0, 2.0]}
        ]

    def test_order_of_input_does_not_change_the_result(self) -> None:
        frames = [frame(i, float(i), tags=["a", "b"][: i % 2 + 1]) for i in range(6)]
        assert merge_type(frames, "tags") == merge_type(list(reversed(frames)), "tags")

    def test_results_hold_only_requested_types_and_mark_unparsed_frames(self) -> None:
        frames = [frame(0, 1.0, tags=["x"], actions=["run"]), frame(1, 2.0)]
        results = build_results(frames, metadata_types=("tags",), description="d", unparsed={1})
        assert set(results) == {"description", "tags", "frames"}
        assert results["frames"][1] == {
            "index": 1,
            "timestamp": 2.0,
            "caption": "frame 1",
            "tags": [],
            "metadata_unparsed": True,
        }
