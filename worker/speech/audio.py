"""A stretch of a video's sound as 16 kHz mono 16-bit WAV, decoded with PyAV (in the sandbox).

Speech servers resample whatever they get to 16 kHz mono; sending that already keeps each
chunk small (32 kB a second, 9.6 MB for five minutes, under the 25 MB servers accept) and
the work on our side. A chunk is decoded from a seek near its start, so a long track is
never held whole: memory follows the chunk length, not the video's.
"""

from __future__ import annotations

import io
import wave
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import av
import numpy as np

from worker.pipeline.probe import unreadable
from worker.pipeline.sandbox import Codec

SAMPLE_RATE = 16_000


@dataclass(frozen=True)
class AudioChunk:
    """WAV bytes of the sound from `start` (seconds on the video's timeline) on."""

    start: float
    seconds: float  # how much sound it holds (0: none there)
    wav: bytes


def decode_chunk(path: Path, start: float, end: float) -> AudioChunk:
    """The first audio track's sound between start and end (seconds from the video's start),
    resampled to 16 kHz mono; empty if the media has no sound there."""
    try:
        with av.open(str(path)) as container:
            if not container.streams.audio:
                return AudioChunk(start, 0.0, _wav(np.zeros(0, np.int16)))
            stream = container.streams.audio[0]
            origin = _origin(container)
            samples, begins = _samples(container, stream, origin, start, end)
    except av.FFmpegError as exc:
        raise unreadable(exc, "the audio could not be decoded") from exc
    return AudioChunk(begins, len(samples) / SAMPLE_RATE, _wav(samples))


def _origin(container: Any) -> float:
    """Where the video's timeline starts, in seconds of the container's clock: times in
    results are from the first video frame, and audio follows the same clock."""
    stream = container.streams.video[0] if container.streams.video else container.streams.audio[0]
    if stream.start_time is None or stream.time_base is None:
        return 0.0
    return float(stream.start_time * stream.time_base)


def _samples(
    container: Any, stream: Any, origin: float, start: float, end: float
) -> tuple[np.ndarray, float]:
    """The samples of [start, end), and the time of the first (later than start if the sound
    begins later)."""
    resampler = av.AudioResampler(format="s16", layout="mono", rate=SAMPLE_RATE)
    if start > 0 and stream.time_base is not None:
        container.seek(int((origin + start) / stream.time_base), stream=stream, backward=True)
    parts: list[np.ndarray] = []
    first: float | None = None  # the video time of the first resampled sample
    wanted = None if end == float("inf") else round((end - start) * SAMPLE_RATE)
    kept = 0
    for frame in container.decode(stream):
        if frame.pts is None or frame.time_base is None:
            continue
        at = float(frame.pts * frame.time_base) - origin
        if at + frame.samples / frame.sample_rate <= start:
            continue  # the seek landed before the chunk
        if at >= end:
            break
        if first is None:
            first = at
        for out in resampler.resample(frame):
            parts.append(out.to_ndarray().reshape(-1))
            kept += parts[-1].size
        if wanted is not None and kept >= wanted + SAMPLE_RATE:
            break  # enough past the end to cut it exactly
    for out in resampler.resample(None):
        parts.append(out.to_ndarray().reshape(-1))
    if first is None:
        return np.zeros(0, np.int16), start
    samples = np.concatenate(parts) if parts else np.zeros(0, np.int16)
    # The samples are contiguous from `first`: cut them to [start, end) exactly.
    skip = max(0, round((start - first) * SAMPLE_RATE))
    begins = max(start, first)
    samples = samples[skip:]
    if wanted is not None:
        samples = samples[: max(0, round((end - begins) * SAMPLE_RATE))]
    return samples, begins


def _wav(samples: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    with wave.open(buffer, "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(SAMPLE_RATE)
        out.writeframes(samples.astype("<i2").tobytes())
    return buffer.getvalue()


# A chunk crosses the decode sandbox's pipe as its times and its WAV bytes.
AUDIO_CHUNK: Codec[AudioChunk] = Codec(
    lambda chunk: ({"start": chunk.start, "seconds": chunk.seconds}, [chunk.wav]),
    lambda value, blobs: AudioChunk(float(value["start"]), float(value["seconds"]), blobs[0]),
)
