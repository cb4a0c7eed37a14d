"""The `local` speech backend: faster-whisper (CTranslate2) in the worker process, the same
chunks, stitching and results as the `openai` backend (docs/api.md, "Transcripts").

The model is loaded once per worker process, when its first chunk arrives (never in the
API), and transcribes one chunk at a time: its own threads (ASR_THREADS) take the cores,
while the next chunks are decoded. Options, as measured on synthesised speech with tiny.en:
- `condition_on_previous_text=False`: otherwise a small model, given silence after speech,
  repeats its last sentence until the chunk ends;
- segment times from the words' timestamps: a segment's own start can sit seconds early
  after silence (0.0 s for speech at 3.0 s); its first word is within a few tenths;
- no VAD filter: it merged four sentences into one segment.
"""

from __future__ import annotations

import asyncio
import io
import logging
import os
import threading
import wave
from typing import Any

import numpy as np

from scenecap.core.errors import SpeechBackendUnavailable
from scenecap.core.settings import Settings
from scenecap.core.speech import local_model_problem
from worker.speech.audio import SAMPLE_RATE
from worker.speech.transcript import ChunkAnswer

log = logging.getLogger(__name__)

BEAM_SIZE = 5
PAUSE_SECONDS = 1.0  # a silence this long between words ends a segment
WINDOW = SAMPLE_RATE // 100  # 10 ms
SILENCE_FLOOR = 10 ** (-60 / 20)  # RMS below -60 dBFS is silence, however quiet the rest
SOUND_SHARE = 0.05  # a window 26 dB under the chunk's loudest is not yet sound
LEAD_MARGIN_SECONDS = 0.3
_models: dict[tuple[str, str, str, int], Any] = {}
_loading = threading.Lock()
_running = threading.Lock()  # one chunk at a time per process


class LocalSpeech:
    """Transcribes chunks with the process's Whisper model; the SpeechClient interface."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings

    async def transcribe(self, wav: bytes, seconds: float) -> ChunkAnswer:
        return await asyncio.to_thread(self._transcribe, wav, seconds)

    async def aclose(self) -> None:
        return None  # the model stays loaded for the process's next job

    def _transcribe(self, wav: bytes, seconds: float) -> ChunkAnswer:
        model = whisper_model(self.settings)
        audio = samples(wav)
        lead = leading_silence(audio)
        if lead is None:  # nothing but silence: nothing to hear, and nothing to invent
            return ChunkAnswer("", "", [], seconds)
        with _running:
            found, info = model.transcribe(
                audio[round(lead * SAMPLE_RATE) :],
                beam_size=BEAM_SIZE,
                condition_on_previous_text=False,
                word_timestamps=True,
                vad_filter=False,
            )
            # Decoding happens here, as the segments are read.
            segments = [
                (start + lead, end + lead, text)
                for segment in found
                for start, end, text in sentences(segment)
            ]
        text = " ".join(s[2] for s in segments)
        return ChunkAnswer(str(info.language or ""), text, segments, seconds)


def whisper_model(settings: Settings) -> Any:
    """The process's model for these settings, loaded on first use."""
    threads = settings.asr_threads or os.cpu_count() or 1
    key = (settings.asr_model_path, settings.asr_device, settings.asr_compute_type, threads)
    with _loading:
        if key not in _models:
            _models[key] = _load(settings, threads)
        return _models[key]


def _load(settings: Settings, threads: int) -> Any:
    if problem := local_model_problem(settings):
        raise SpeechBackendUnavailable(problem)
    try:
        from faster_whisper import WhisperModel
    except ImportError:
        raise SpeechBackendUnavailable(
            "SCENECAP_ASR_BACKEND=local needs faster-whisper: pip install 'scenecap[speech]'"
        ) from None
    try:
        return WhisperModel(
            os.path.expanduser(settings.asr_model_path),
            device=settings.asr_device,
            compute_type=settings.asr_compute_type,
            cpu_threads=threads,
            num_workers=1,
        )
    except Exception as exc:  # CTranslate2 raises RuntimeError or ValueError on a bad model
        log.warning("the speech model did not load from %s: %s", settings.asr_model_path, exc)
        raise SpeechBackendUnavailable(
            "the speech model in SCENECAP_ASR_MODEL_PATH did not load "
            "(SCENECAP_ASR_COMPUTE_TYPE and SCENECAP_ASR_DEVICE must suit it); see the worker's log"
        ) from None


def leading_silence(audio: np.ndarray) -> float | None:
    """Seconds of silence the chunk begins with, less a margin; None if it is all silence.
    Whisper times the first words of its audio from its start: speech 0.6 s into a chunk
    was placed at 0.0, so the silence before it is cut off first."""
    windows = len(audio) // WINDOW
    if windows == 0:
        return None
    loudness = np.sqrt(np.mean(audio[: windows * WINDOW].reshape(windows, WINDOW) ** 2, axis=1))
    loud = np.flatnonzero(loudness > max(SILENCE_FLOOR, SOUND_SHARE * float(loudness.max())))
    if loud.size == 0:
        return None
    return max(0.0, loud[0] * WINDOW / SAMPLE_RATE - LEAD_MARGIN_SECONDS)


def samples(wav: bytes) -> np.ndarray:
    """A chunk's 16 kHz mono 16-bit WAV as the float samples Whisper takes."""
    with wave.open(io.BytesIO(wav)) as sound:
        pcm = sound.readframes(sound.getnframes())
    return np.frombuffer(pcm, np.int16).astype(np.float32) / 32768.0


def sentences(segment: Any) -> list[tuple[float, float, str]]:
    """A segment as (start, end, text) per sentence (or stretch between pauses), timed by its
    words: a small model runs sentences together into one segment, which would then be kept
    whole by the chunk its middle falls in, and heard twice at a chunk border."""
    words = [w for w in (segment.words or ()) if w.word.strip()]
    if not words:
        text = str(segment.text).strip()
        return [(float(segment.start), float(segment.end), text)] if text else []
    runs: list[list[Any]] = [[]]
    for word in words:
        if runs[-1] and word.start - runs[-1][-1].end > PAUSE_SECONDS:
            runs.append([])
        runs[-1].append(word)
        if word.word.strip().endswith((".", "?", "!")):
            runs.append([])
    return [
        (
            float(run[0].start),
            float(max(run[-1].end, run[0].start)),
            "".join(w.word for w in run).strip(),
        )
        for run in runs
        if run
    ]
