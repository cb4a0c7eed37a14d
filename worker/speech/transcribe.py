"""Transcribe a video's sound chunk by chunk: each chunk decoded in the sandbox, sent to the
speech backend (a server, or the local model), and its answer put back on the video's
timeline."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path

from scenecap.core.settings import Settings
from worker.pipeline.sandbox import SandboxLimits, run_sandboxed
from worker.speech.asr import SpeechClient
from worker.speech.audio import AUDIO_CHUNK, AudioChunk, decode_chunk
from worker.speech.local import LocalSpeech
from worker.speech.transcript import ChunkSpan, Transcript, chunk_spans, keep, without_repeats

Speech = SpeechClient | LocalSpeech


def speech_backend(settings: Settings) -> Speech:
    """The configured backend (`openai` or `local`), for one event loop."""
    return LocalSpeech(settings) if settings.asr_backend == "local" else SpeechClient(settings)


# Chunks decoded ahead of the requests, two at a time: a request slot that frees finds its
# next chunk ready, and at most ASR_MAX_CONCURRENCY + DECODES_AHEAD chunks are held at once.
DECODES_AHEAD = 2


async def transcribe_chunk(
    path: Path, span: ChunkSpan, client: Speech, limits: SandboxLimits
) -> Transcript:
    """One chunk's part of the transcript: the segments it keeps, its language, and how
    much sound of its own span it held."""
    return await heard_in(span, await decoded(path, span, limits), client)


async def decoded(path: Path, span: ChunkSpan, limits: SandboxLimits) -> AudioChunk:
    """The chunk's sound (and its neighbours' overlap), decoded in the sandbox."""
    return await asyncio.to_thread(
        lambda: run_sandboxed(
            lambda _send: decode_chunk(path, span.heard_from, span.heard_until),
            limits,
            codec=AUDIO_CHUNK,
        )
    )


async def heard_in(span: ChunkSpan, chunk: AudioChunk, client: Speech) -> Transcript:
    """What the speech server heard in a decoded chunk, put back on the video's timeline."""
    if chunk.seconds <= 0:
        return Transcript()
    answer = await client.transcribe(chunk.wav, chunk.seconds)
    own = min(span.end, chunk.start + chunk.seconds) - max(span.start, chunk.start)
    return Transcript(answer.language, keep(span, chunk.start, answer), max(0.0, own))


async def transcribe(
    path: Path,
    duration: float,
    settings: Settings,
    on_chunk: Callable[[int, int], None] | None = None,
) -> Transcript:
    """The whole transcript, chunks in flight at most ASR_MAX_CONCURRENCY at a time;
    `on_chunk(done, total)` after each."""
    spans = chunk_spans(duration, settings.asr_chunk_seconds)
    client = speech_backend(settings)
    sending = asyncio.Semaphore(settings.asr_max_concurrency)
    decoding = asyncio.Semaphore(DECODES_AHEAD)
    held = asyncio.Semaphore(settings.asr_max_concurrency + DECODES_AHEAD)
    limits = SandboxLimits.of(settings)
    done = 0
    # A failure stops new chunks, but never a request in flight (as captioning does): it is
    # answered, and a request cut off mid-upload reaches the server as a broken one.
    stopped: list[Exception] = []

    async def one(span: ChunkSpan) -> Transcript:
        nonlocal done
        async with held:
            try:
                if not stopped:
                    async with decoding:
                        chunk = await decoded(path, span, limits)
                if stopped:
                    return Transcript()
                async with sending:
                    if stopped:
                        return Transcript()
                    part = await heard_in(span, chunk, client)
            except Exception as exc:  # raised below, once every request in flight is back
                stopped.append(exc)
                return Transcript()
        done += 1
        if on_chunk is not None:
            on_chunk(done, len(spans))
        return part

    try:
        parts = await asyncio.gather(*(one(span) for span in spans))
    finally:
        await client.aclose()
    if stopped:
        raise stopped[0]
    return joined(parts)


def joined(parts: list[Transcript]) -> Transcript:
    """Chunks' parts, in time order, as one transcript (the first language reported)."""
    segments = without_repeats([s for part in parts for s in part.segments])
    language = next((p.language for p in parts if p.language), "")
    return Transcript(language, segments, sum(p.audio_seconds for p in parts))


def speech_lines(transcript: Transcript) -> str:
    """The transcript as lines of "[time] text", for the summary requests."""
    return "\n".join(f"[{s.start:.1f} s] {s.text}" for s in transcript.segments)
