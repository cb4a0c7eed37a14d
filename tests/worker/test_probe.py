"""Probing: measured values, odd containers, and each limit failing with its code."""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import cv2
import pytest

from scenecap.cli.sample import SampleScene, write_sample_video
from scenecap.core.errors import (
    DurationTooLong,
    MediaUnreadable,
    NoVideoStream,
    ResolutionTooLarge,
    UnsupportedMedia,
)
from scenecap.core.media import sniff_media
from tests.support.clips import (
    audio_only,
    constant_clip,
    flat,
    gif_image,
    vfr_cut_clip,
    write_frames,
)
from worker.pipeline.extract import ExtractOptions, extract_frames
from worker.pipeline.plan import PlannedFrame
from worker.pipeline.probe import Limits, probe_media

GENEROUS = Limits(max_duration_seconds=3600, max_input_pixels=8192 * 8192)


class TestVideos:
    def test_constant_rate_clip_is_measured(self, media_dir: Path) -> None:
        info = probe_media(media_dir / "sample.mp4", GENEROUS)
        assert (info.duration, info.width, info.height, info.fps) == (12.0, 640, 360, 30.0)
        assert info.frame_count == 360 and not info.variable_fps
        assert info.codec == "h264" and not info.has_audio
        assert info.timeline is not None and info.timeline.keyframes[0] == 0.0

    def test_variable_frame_rate_is_detected(self, tmp_path: Path) -> None:
        path, _cut = vfr_cut_clip(tmp_path / "vfr.mp4")
        info = probe_media(path, GENEROUS)
        assert info.variable_fps
        assert info.frame_count == 120
        assert info.duration == pytest.approx(4.0, abs=0.03)

    def test_audio_track_is_reported(self, tmp_path: Path) -> None:
        info = probe_media(constant_clip(tmp_path / "a.mp4", ["red"], 1.0, audio=True), GENEROUS)
        assert info.has_audio

    def test_rotated_clip_reports_its_displayed_size(self, tmp_path: Path) -> None:
        path = write_sample_video(
            tmp_path / "r.mp4", [SampleScene("red", 1.0)], width=320, height=180, rotation=90
        )
        info = probe_media(path, GENEROUS)
        assert (info.width, info.height, info.rotation) == (180, 320, 90)

    def test_anamorphic_clip_reports_its_displayed_size(self, tmp_path: Path) -> None:
        frames = [(i / 30, flat("red", 160, 180)) for i in range(10)]
        path = write_frames(tmp_path / "wide.mp4", frames, pixel_aspect=Fraction(2, 1))
        info = probe_media(path, GENEROUS)
        assert (info.width, info.height) == (320, 180), "each stored pixel is shown 2 wide"


class TestLimits:
    def test_too_long_is_refused(self, media_dir: Path) -> None:
        with pytest.raises(DurationTooLong) as caught:
            probe_media(media_dir / "sample.mp4", Limits(10, 8192 * 8192))
        assert caught.value.code == "DURATION_TOO_LONG"

    def test_too_many_pixels_is_refused(self, media_dir: Path) -> None:
        with pytest.raises(ResolutionTooLarge) as caught:
            probe_media(media_dir / "sample.mp4", Limits(3600, 640 * 360 - 1))
        assert caught.value.details == {"width": 640, "height": 360, "limit": 640 * 360 - 1}

    def test_audio_only_file_has_no_video_stream(self, tmp_path: Path) -> None:
        path = audio_only(tmp_path / "tone.m4a")
        assert sniff_media(path.read_bytes()[:64]).kind == "video"  # an MP4 container...
        with pytest.raises(NoVideoStream):  # ...without a picture
            probe_media(path, GENEROUS)

    @pytest.mark.parametrize("name", ["random.mp4", "truncated.mp4"])
    def test_garbage_is_unreadable(self, media_dir: Path, name: str) -> None:
        with pytest.raises((MediaUnreadable, UnsupportedMedia)):
            sniff_media((media_dir / name).read_bytes()[:4096])
            probe_media(media_dir / name, GENEROUS)

    def test_zero_byte_file_is_unsupported(self) -> None:
        with pytest.raises(UnsupportedMedia):
            sniff_media(b"")


class TestImages:
    @pytest.mark.parametrize("suffix", [".jpg", ".png", ".webp", ".gif"])
    def test_each_image_type_is_sniffed_probed_and_extracted(
        self, tmp_path: Path, suffix: str
    ) -> None:
        path = tmp_path / f"green{suffix}"
        if suffix == ".gif":
            gif_image(path)
        else:
            assert cv2.imwrite(str(path), flat("green", 160, 120))
        assert sniff_media(path.read_bytes()[:64]).kind == "image"
        info = probe_media(path, GENEROUS, is_image=True)
        assert (info.width, info.height) == (160, 120)
        [frame] = extract_frames(path, [PlannedFrame(0, 0.0)], ExtractOptions(max_pixels=602112))
        image = cv2.imdecode(__import__("numpy").frombuffer(frame.jpeg, "uint8"), cv2.IMREAD_COLOR)
        assert image is not None
        assert abs(int(image[60, 80, 1]) - 180) < 20, "the green channel survives the round trip"

    def test_oversized_image_is_refused_before_decoding(self, tmp_path: Path) -> None:
        path = tmp_path / "big.png"
        cv2.imwrite(str(path), flat("red", 400, 300))
        with pytest.raises(ResolutionTooLarge):
            probe_media(path, Limits(3600, 100_000), is_image=True)
