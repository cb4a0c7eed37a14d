"""Frame extraction: the frame we caption is the one a sequential decode shows at its time."""

from __future__ import annotations

import subprocess
import threading
from fractions import Fraction
from pathlib import Path

import av
import cv2
import imageio_ffmpeg
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from scenecap.cli.sample import SampleScene, write_sample_video
from scenecap.core.errors import MediaUnreadable
from tests.support.clips import barcode_clip, flat, read_barcode, write_frames
from worker.pipeline.extract import (
    ExtractOptions,
    ExtractPolicy,
    extract_frames,
    image_tokens,
    smart_resize,
)
from worker.pipeline.plan import PlannedFrame, plan_even
from worker.pipeline.probe import Limits, Timeline, probe_media, read_timeline

MAX_PIXELS = 768 * 28 * 28


@pytest.fixture(scope="module")
def gop_video(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A video with sparse keyframes (every 2 s), so exact extraction must decode forward."""
    path = tmp_path_factory.mktemp("extract") / "gop.mp4"
    scenes = [SampleScene(c, 2.5) for c in ("red", "green", "blue", "yellow")]
    return write_sample_video(path, scenes, width=320, height=180, gop=60)


def sequential_frames(path: Path) -> list[tuple[float, np.ndarray]]:
    with av.open(str(path)) as container:
        return [(float(f.time), f.to_ndarray(format="bgr24")) for f in container.decode(video=0)]


def on_screen(frames: list[tuple[float, np.ndarray]], time: float) -> tuple[float, np.ndarray]:
    return [f for f in frames if f[0] <= time + 1e-6][-1]


def decoded(jpeg: bytes) -> np.ndarray:
    image = cv2.imdecode(np.frombuffer(jpeg, np.uint8), cv2.IMREAD_COLOR)
    assert image is not None, "not a JPEG"
    return image


def barcode_times(count: int, *, variable: bool) -> list[float]:
    """Presentation times for a barcode clip: 30 fps, or gaps from 10 to 80 ms."""
    if not variable:
        return [i / 30 for i in range(count)]
    gaps = np.random.default_rng(7).integers(10, 81, count) / 1000
    return [round(float(t), 3) for t in np.concatenate([[0.0], np.cumsum(gaps[:-1])])]


def random_plan(duration: float, count: int, seed: int) -> list[PlannedFrame]:
    """Planned times anywhere, plus the edges: the start, the last moment, past the end."""
    times = np.random.default_rng(seed).uniform(0, duration, count).tolist()
    times += [0.0, duration - 1e-3, duration + 1.0]
    return [PlannedFrame(i, float(t)) for i, t in enumerate(times)]


class TestFramesAreExact:
    """Each barcode frame shows its own index, so a JPEG tells exactly which frame it is: the
    wrong neighbour, or a frame decoded without one of its references, reads differently."""

    # MPEG-TS seeks by decode time and lands past the keyframe; Matroska seeks by cues.
    @pytest.mark.parametrize("container", ["mp4", "mkv", "ts"])
    @pytest.mark.parametrize("variable", [False, True], ids=["cfr", "vfr"])
    @pytest.mark.parametrize("complete", [True, False], ids=["guided", "every-frame"])
    @pytest.mark.parametrize("policy", ["exact", "keyframe"])
    # One decoder, or keyframe groups shared among three.
    @pytest.mark.parametrize("decoders", [1, 3], ids=["1-decoder", "3-decoders"])
    def test_each_frame_is_the_one_shown_at_its_reported_time(
        self,
        tmp_path: Path,
        variable: bool,
        complete: bool,
        policy: str,
        container: str,
        decoders: int,
    ) -> None:
        times = barcode_times(240, variable=variable)
        clip = barcode_clip(tmp_path / f"barcode.{container}", times, gop=45)
        timeline = read_timeline(clip)
        times = timeline.times  # as stored (milliseconds), frame i at times[i]
        if not complete:  # As if the packets carried no times: the plain decode must agree.
            timeline = Timeline(timeline.times, timeline.keyframes, timeline.end, False)
        plan = random_plan(timeline.end, 40, seed=len(times))
        extracted = list(
            extract_frames(
                clip,
                plan,
                ExtractOptions(max_pixels=MAX_PIXELS, policy=policy, decoders=decoders),  # type: ignore[arg-type]
                timeline=timeline,
            )
        )
        assert sorted(f.planned.index for f in extracted) == [p.index for p in plan]
        assert [f.planned.time for f in extracted] == sorted(p.time for p in plan), "time order"
        for frame in extracted:
            shown = read_barcode(decoded(frame.jpeg))
            assert frame.timestamp == pytest.approx(times[shown], abs=1e-3), (
                f"planned {frame.planned.time:.3f}: reported {frame.timestamp}, "
                f"but the frame is #{shown} at {times[shown]}"
            )
            on_screen = max(i for i, t in enumerate(times) if t <= frame.planned.time + 1e-6)
            if policy == "exact":
                assert shown == on_screen
            else:
                assert shown == on_screen or frame.timestamp in timeline.keyframes

    def test_planned_times_that_share_a_frame_get_that_frame(self, tmp_path: Path) -> None:
        clip = barcode_clip(tmp_path / "slow.mp4", [i / 2 for i in range(8)], gop=4)
        plan = [PlannedFrame(i, t) for i, t in enumerate([0.1, 0.3, 0.6, 0.9, 3.2, 3.4])]
        extracted = list(
            extract_frames(clip, plan, ExtractOptions(max_pixels=MAX_PIXELS, policy="exact"))
        )
        assert [read_barcode(decoded(f.jpeg)) for f in extracted] == [0, 0, 1, 1, 6, 6]
        assert [f.timestamp for f in extracted] == [0.0, 0.0, 0.5, 0.5, 3.0, 3.0]

    def test_pre_roll_cut_by_an_edit_list_is_never_shown(self, tmp_path: Path) -> None:
        """A stream copy cut at 1.3 s keeps the GOP from 1.07 s and an edit list that hides
        those frames: time 0 is frame #39, and no frame before it may be taken."""
        source = barcode_clip(tmp_path / "long.mp4", [i / 30 for i in range(240)], gop=32)
        clip = tmp_path / "cut.mp4"
        ffmpeg = imageio_ffmpeg.get_ffmpeg_exe()
        cut = [ffmpeg, "-loglevel", "error", "-ss", "1.3", "-i", str(source), "-c", "copy"]
        subprocess.run([*cut, str(clip)], check=True)
        timeline = read_timeline(clip)
        assert timeline.keyframes[0] > 0, "the GOP starts before the edit: hidden pre-roll"
        assert probe_media(clip, Limits(3600, 10**8)).frame_count == 240 - 39, "shown frames"
        plan = [PlannedFrame(k, k / 30 + 1 / 60) for k in range(0, 200, 7)]
        policies: tuple[ExtractPolicy, ...] = ("exact", "keyframe")
        for policy in policies:
            for frame in extract_frames(
                clip, plan, ExtractOptions(max_pixels=MAX_PIXELS, policy=policy)
            ):
                shown = read_barcode(decoded(frame.jpeg))
                assert shown == 39 + round(frame.timestamp * 30), (policy, frame.timestamp)
                if policy == "exact":
                    assert shown == 39 + frame.planned.index

    def test_anamorphic_video_is_shown_at_its_display_aspect(self, tmp_path: Path) -> None:
        frames = [(i / 30, flat("red", 160, 180)) for i in range(10)]
        clip = write_frames(tmp_path / "wide.mp4", frames, pixel_aspect=Fraction(2, 1))
        [frame] = extract_frames(
            clip, [PlannedFrame(0, 0.1)], ExtractOptions(max_pixels=MAX_PIXELS)
        )
        assert frame.width / frame.height == pytest.approx(320 / 180, abs=0.1)


class TestDecoders:
    """Keyframe groups are shared among decoder threads; none may outlive the extraction."""

    def test_a_failing_decoder_fails_the_extraction_and_no_thread_is_left(
        self, tmp_path: Path, gop_video: Path
    ) -> None:
        timeline = read_timeline(gop_video)  # as the probe saw the file before it went away
        before = threading.active_count()
        with pytest.raises(MediaUnreadable):
            list(
                extract_frames(
                    tmp_path / "gone.mp4",
                    plan_even(10.0, 17, 0.5),
                    ExtractOptions(max_pixels=MAX_PIXELS, policy="exact", decoders=3),
                    timeline=timeline,
                )
            )
        assert threading.active_count() == before

    def test_nothing_planned_decodes_nothing(self, gop_video: Path) -> None:
        assert list(extract_frames(gop_video, [], ExtractOptions(max_pixels=MAX_PIXELS))) == []

    def test_a_consumer_that_stops_early_leaves_no_decoder_running(self, gop_video: Path) -> None:
        before = threading.active_count()
        frames = extract_frames(
            gop_video, plan_even(10.0, 17, 0.5), ExtractOptions(max_pixels=MAX_PIXELS, decoders=3)
        )
        first = next(frames)
        frames.close()
        assert first.planned.index == 0
        assert threading.active_count() == before


class TestExtract:
    @pytest.mark.parametrize("policy", ["exact", "keyframe"])
    def test_each_frame_matches_the_sequential_decode_at_its_reported_time(
        self, gop_video: Path, policy: ExtractPolicy
    ) -> None:
        reference = sequential_frames(gop_video)
        plan = plan_even(10.0, 17, 0.5)
        extracted = list(
            extract_frames(gop_video, plan, ExtractOptions(max_pixels=MAX_PIXELS, policy=policy))
        )
        assert [f.planned.index for f in extracted] == [p.index for p in plan]
        for frame in extracted:
            assert any(abs(t - frame.timestamp) < 1e-3 for t, _ in reference), "not a real PTS"
            _time, expected = on_screen(reference, frame.timestamp)
            ours = cv2.resize(decoded(frame.jpeg), (expected.shape[1], expected.shape[0]))
            assert float(np.abs(ours.astype(int) - expected.astype(int)).mean()) < 6.0

    def test_exact_policy_takes_the_frame_on_screen_at_the_planned_time(
        self, gop_video: Path
    ) -> None:
        reference = sequential_frames(gop_video)
        plan = plan_even(10.0, 17, 0.5)
        for frame in extract_frames(
            gop_video, plan, ExtractOptions(max_pixels=MAX_PIXELS, policy="exact")
        ):
            assert frame.timestamp == pytest.approx(
                on_screen(reference, frame.planned.time)[0], abs=1e-3
            )

    def test_keyframe_policy_stays_within_its_tolerance(self, gop_video: Path) -> None:
        plan = plan_even(10.0, 10, 0.5)
        keyframes = read_timeline(gop_video).keyframes
        for frame in extract_frames(
            gop_video,
            plan,
            ExtractOptions(max_pixels=MAX_PIXELS, policy="keyframe", tolerance=0.25),
        ):
            took_keyframe = any(abs(frame.timestamp - k) < 1e-3 for k in keyframes)
            assert abs(frame.timestamp - frame.planned.time) <= 0.25 + 1e-3 or not took_keyframe
            assert abs(frame.timestamp - frame.planned.time) < 1 / 30 + 0.25 + 1e-3

    def test_frames_fit_the_pixel_budget(self, gop_video: Path) -> None:
        for frame in extract_frames(
            gop_video, [PlannedFrame(0, 1.0)], ExtractOptions(max_pixels=28 * 28 * 16)
        ):
            assert frame.width * frame.height <= 28 * 28 * 16
            assert frame.width % 28 == 0 and frame.height % 28 == 0
            assert decoded(frame.jpeg).shape[:2] == (frame.height, frame.width)

    def test_rotated_video_is_turned_upright(self, tmp_path: Path) -> None:
        path = write_sample_video(
            tmp_path / "rotated.mp4", [SampleScene("red", 1.0)], width=320, height=180, rotation=90
        )
        [frame] = extract_frames(
            path, [PlannedFrame(0, 0.5)], ExtractOptions(max_pixels=MAX_PIXELS)
        )
        assert frame.height > frame.width, "a 90° display matrix shows the 320x180 frame portrait"

    def test_truncated_file_is_unreadable(self, tmp_path: Path, gop_video: Path) -> None:
        broken = tmp_path / "broken.mp4"
        broken.write_bytes(gop_video.read_bytes()[:2000])
        with pytest.raises(MediaUnreadable):
            probe_media(broken, Limits(3600, 10**8))


@given(
    st.integers(1, 8000),
    st.integers(1, 8000),
    st.sampled_from([56 * 56 * 4, 602112, 1280 * 28 * 28]),
)
def test_smart_resize_keeps_multiples_of_28_within_budget(
    height: int, width: int, max_pixels: int
) -> None:
    if max(height, width) / min(height, width) > 200:
        return  # Qwen2-VL refuses such aspect ratios outright.
    h, w = smart_resize(height, width, max_pixels=max_pixels)
    assert h % 28 == 0 and w % 28 == 0
    assert h * w <= max_pixels
    assert image_tokens(h, w) == (h // 28) * (w // 28)
