"""Odd clips for the pipeline tests, written with PyAV: VFR, fades, audio, image formats."""

from __future__ import annotations

import re
import subprocess
from collections.abc import Sequence
from fractions import Fraction
from pathlib import Path

import av
import numpy as np

from scenecap.cli.sample import PALETTE


def flat(colour: str, width: int = 320, height: int = 180) -> np.ndarray:
    image = np.empty((height, width, 3), np.uint8)
    image[:] = PALETTE[colour]
    return image


def write_frames(
    path: Path,
    frames: Sequence[tuple[float, np.ndarray]],
    *,
    audio: bool = False,
    options: dict[str, str] | None = None,
    pixel_aspect: Fraction | None = None,
) -> Path:
    """Write frames at the given presentation times (seconds): VFR when the gaps differ;
    anamorphic when `pixel_aspect` (the width of a pixel over its height) is given."""
    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=30)
        height, width = frames[0][1].shape[:2]
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        stream.codec_context.time_base = Fraction(1, 1000)
        stream.options = {"preset": "veryfast", **(options or {})}
        if pixel_aspect is not None:
            stream.codec_context.sample_aspect_ratio = pixel_aspect
        sound = container.add_stream("aac", rate=44100) if audio else None
        for at, image in frames:
            frame = av.VideoFrame.from_ndarray(image, format="bgr24")
            frame.pts, frame.time_base = round(at * 1000), Fraction(1, 1000)
            container.mux(stream.encode(frame))
        container.mux(stream.encode(None))
        if sound is not None:
            _write_tone(container, sound, seconds=frames[-1][0])
    return path


def _write_tone(
    container: av.container.OutputContainer, stream: av.audio.AudioStream, seconds: float
) -> None:
    samples = np.sin(np.arange(int(44100 * seconds)) * 2 * np.pi * 440 / 44100).astype(np.float32)
    for start in range(0, len(samples), 1024):
        chunk = samples[start : start + 1024].reshape(1, -1)
        frame = av.AudioFrame.from_ndarray(chunk, format="flt", layout="mono")
        frame.sample_rate, frame.pts = 44100, start
        container.mux(stream.encode(frame))
    container.mux(stream.encode(None))


BARCODE_BITS = 10


def barcode(index: int, width: int = 320, height: int = 180) -> np.ndarray:
    """A frame showing `index` in binary, lowest bit first, as black or white columns."""
    image = np.zeros((height, width, 3), np.uint8)
    column = width // BARCODE_BITS
    for bit in range(BARCODE_BITS):
        if index >> bit & 1:
            image[:, bit * column : (bit + 1) * column] = 255
    return image


def read_barcode(image: np.ndarray) -> int:
    """The index a `barcode` frame shows, read from the middle of each column (survives
    resizing and JPEG)."""
    gray = image.mean(axis=2) if image.ndim == 3 else image
    column = image.shape[1] / BARCODE_BITS
    middles = [
        gray[:, round((bit + 0.3) * column) : round((bit + 0.7) * column)]
        for bit in range(BARCODE_BITS)
    ]
    return sum(1 << bit for bit, middle in enumerate(middles) if middle.mean() > 127)


def barcode_clip(path: Path, times: Sequence[float], *, gop: int) -> Path:
    """Frame i shows i at times[i]; x264 with B-frames used as references (its default) and
    a keyframe at least every `gop` frames."""
    frames = [(t, barcode(i)) for i, t in enumerate(times)]
    return write_frames(path, frames, options={"g": str(gop), "bf": "3", "b-pyramid": "normal"})


def vfr_cut_clip(path: Path) -> tuple[Path, float]:
    """Red at 10 fps for 2 s, then blue at 50 fps for 2 s: the cut is at 2.0 s."""
    frames = [(i / 10, flat("red")) for i in range(20)] + [
        (2 + i / 50, flat("blue")) for i in range(100)
    ]
    return write_frames(path, frames), 2.0


def constant_clip(
    path: Path, colours: Sequence[str], seconds_each: float, *, audio: bool = False
) -> Path:
    frames = []
    for n, colour in enumerate(colours):
        frames += [
            (n * seconds_each + i / 30, flat(colour)) for i in range(round(seconds_each * 30))
        ]
    return write_frames(path, frames, audio=audio)


def fade_clip(path: Path) -> tuple[Path, tuple[float, float]]:
    """2 s red, a 2 s cross-fade to blue, 2 s blue; returns the fade's start and end."""
    red, blue = flat("red").astype(float), flat("blue").astype(float)
    frames = []
    for i in range(180):
        t = i / 30
        mix = min(1.0, max(0.0, (t - 2) / 2))
        frames.append((t, ((1 - mix) * red + mix * blue).astype(np.uint8)))
    return write_frames(path, frames), (2.0, 4.0)


def audio_only(path: Path) -> Path:
    with av.open(str(path), "w", format="mp4") as container:
        _write_tone(container, container.add_stream("aac", rate=44100), seconds=1.0)
    return path


def gif_image(path: Path) -> Path:
    with av.open(str(path), "w", format="gif") as container:
        stream = container.add_stream("gif", rate=1)
        stream.width, stream.height, stream.pix_fmt = 160, 120, "rgb8"
        frame = av.VideoFrame.from_ndarray(flat("green", 160, 120), format="bgr24")
        container.mux(stream.encode(frame))
        container.mux(stream.encode(None))
    return path


Burst = tuple[float, float, int]  # start and length in seconds, pitch in Hz


def spoken_clip(path: Path, seconds: float, bursts: Sequence[Burst], *, fps: int = 5) -> Path:
    """A video of flat frames whose sound is silence but for tone bursts at known times (the
    fake speech server hears each burst as one word)."""
    samples = np.zeros(round(44100 * seconds), np.float32)
    for start, length, pitch in bursts:
        first, count = round(start * 44100), round(length * 44100)
        times = np.arange(count) / 44100
        samples[first : first + count] = 0.5 * np.sin(2 * np.pi * pitch * times)
    return flat_clip_with_sound(path, seconds, samples, "green", fps)


def flat_clip_with_sound(
    path: Path, seconds: float, samples: np.ndarray, colour: str, fps: int
) -> Path:
    """A 160x96 video of one flat colour whose sound is `samples` (44.1 kHz mono floats)."""
    with av.open(str(path), "w") as container:
        video = container.add_stream("libx264", rate=fps)
        video.width, video.height, video.pix_fmt = 160, 96, "yuv420p"
        video.options = {"preset": "ultrafast"}
        sound = container.add_stream("aac", rate=44100)
        for n in range(round(seconds * fps)):
            frame = av.VideoFrame.from_ndarray(flat(colour, 160, 96), format="bgr24")
            frame.pts = n
            container.mux(video.encode(frame))
        container.mux(video.encode(None))
        for start in range(0, len(samples), 1024):
            chunk = samples[start : start + 1024].reshape(1, -1)
            audio = av.AudioFrame.from_ndarray(chunk, format="flt", layout="mono")
            audio.sample_rate, audio.pts = 44100, start
            container.mux(sound.encode(audio))
        container.mux(sound.encode(None))
    return path


Sentence = tuple[float, str]  # when it starts, in seconds, and what is said


def espeak(text: str, folder: Path) -> np.ndarray:
    """`text` spoken by Debian's espeak-ng (scripts/ensure-tools.sh installs it), as 44.1 kHz
    float samples."""
    wav = folder / f"said-{abs(hash(text))}.wav"
    subprocess.run(["espeak-ng", "-s", "150", "-w", str(wav), text], check=True, timeout=60)
    with av.open(str(wav)) as container:
        resampler = av.AudioResampler(format="flt", layout="mono", rate=44100)
        parts = [
            out.to_ndarray().reshape(-1)
            for frame in container.decode(audio=0)
            for out in resampler.resample(frame)
        ]
    return np.concatenate(parts) if parts else np.zeros(0, np.float32)


def voiced_clip(
    path: Path, seconds: float, sentences: Sequence[Sentence], *, fps: int = 5
) -> list[tuple[float, float, str]]:
    """A video of flat frames whose sound is silence but for real (synthesised) speech at
    known times; returns when each sentence is spoken (start, end, text)."""
    samples = np.zeros(round(44100 * seconds), np.float32)
    spoken = []
    for start, text in sentences:
        voice = espeak(text, path.parent)
        first = round(start * 44100)
        samples[first : first + len(voice)] = 0.8 * voice[: len(samples) - first]
        spoken.append((start, start + len(voice) / 44100, text))
    flat_clip_with_sound(path, seconds, samples, "blue", fps)
    return spoken


def words(text: str) -> list[str]:
    return re.findall(r"[a-z0-9']+", text.lower())


def word_error_rate(heard: list[str], said: list[str]) -> float:
    """Word-level edit distance over the words said (substitutions, insertions, deletions)."""
    row = list(range(len(heard) + 1))
    for i, word in enumerate(said, 1):
        previous, row[0] = row[0], i
        for j, other in enumerate(heard, 1):
            previous, row[j] = row[j], min(row[j] + 1, row[j - 1] + 1, previous + (word != other))
    return row[-1] / max(1, len(said))
