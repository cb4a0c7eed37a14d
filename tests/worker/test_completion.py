"""Completions take their frames the way categories jobs do (one set of extraction options)."""

from __future__ import annotations

import base64
from pathlib import Path

import pytest

from scenecap.core.settings import Settings
from scenecap.store.local import LocalStore
from worker.completion import inline_media


def frame_times(video: Path, tmp_path: Path, settings: Settings) -> str:
    data = base64.b64encode(video.read_bytes()).decode()
    messages = [
        {
            "role": "user",
            "content": [
                {"type": "image_url", "image_url": {"url": f"data:video/mp4;base64,{data}"}}
            ],
        }
    ]
    store = LocalStore(f"file://{tmp_path / 'store'}")
    [message] = inline_media(messages, tmp_path, settings, max_tokens=100, store=store)
    return str(message["content"][0]["text"])


@pytest.mark.parametrize(("tolerance", "near_the_keyframe"), [(None, "10.1"), (0.0, "9.7")])
def test_keyframe_tolerance_applies_to_completions(
    media_dir: Path, tmp_path: Path, tolerance: float | None, near_the_keyframe: str
) -> None:
    # The sample has a keyframe at 10.07 s (x264 starts one at a cut); eight frames are
    # planned every 1.5 s from 0.75 s. The default tolerance (a quarter of the spacing) takes
    # that keyframe for the frame planned at 9.75 s; none takes the frame on screen then.
    settings = Settings(completion_video_frames=8, keyframe_tolerance_seconds=tolerance)
    times = frame_times(media_dir / "sample.mp4", tmp_path, settings)
    assert times.startswith("Frames of a 12.0 s video at ")
    assert f", {near_the_keyframe}, " in times
