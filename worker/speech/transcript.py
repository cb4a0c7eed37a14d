"""Transcripts (pure functions): how a video's sound is cut into chunks, how the chunks'
answers are stitched so no words repeat at a border, and what was said during a stretch."""

from __future__ import annotations

import difflib
import math
import re
from dataclasses import dataclass, field
from typing import Any

# Each chunk also hears this much of its neighbours, so a word cut by a border is heard whole
# by both; the chunk whose own span holds the middle of it keeps it.
OVERLAP_SECONDS = 2.0


@dataclass(frozen=True)
class Spoken:
    start: float
    end: float
    text: str


@dataclass(frozen=True)
class ChunkSpan:
    """A chunk's own span [start, end) and what it decodes, [start, end) plus the overlap."""

    index: int
    start: float
    end: float

    @property
    def heard_from(self) -> float:
        return max(0.0, self.start - OVERLAP_SECONDS)

    @property
    def heard_until(self) -> float:
        return self.end + OVERLAP_SECONDS


@dataclass
class Transcript:
    language: str = ""
    segments: list[Spoken] = field(default_factory=list)
    audio_seconds: float = 0.0

    @property
    def text(self) -> str:
        return " ".join(s.text for s in self.segments if s.text)

    def heard(self, start: float, end: float) -> str:
        """What was said during [start, end]: every segment overlapping it."""
        return " ".join(s.text for s in self.segments if s.start < end and s.end > start and s.text)

    def dumped(self) -> dict[str, Any]:
        """What Transcript.of reads back (the result, and the sound's length)."""
        return {**self.as_result(), "audio_seconds": self.audio_seconds}

    def as_result(self) -> dict[str, Any]:
        """`results.transcript` (docs/api.md)."""
        return {
            "language": self.language,
            "text": self.text,
            "segments": [
                {"start": round(s.start, 3), "end": round(s.end, 3), "text": s.text}
                for s in self.segments
            ],
        }

    @classmethod
    def of(cls, value: dict[str, Any] | None) -> Transcript:
        if not value:
            return cls()
        return cls(
            str(value.get("language") or ""),
            [Spoken(float(s["start"]), float(s["end"]), str(s["text"])) for s in value["segments"]],
            float(value.get("audio_seconds") or 0.0),
        )


def chunk_spans(duration: float, chunk_seconds: float) -> list[ChunkSpan]:
    """Equal spans of at most chunk_seconds covering the video (the last runs to its end,
    and past it: sound may outlast the picture)."""
    count = max(1, math.ceil(duration / chunk_seconds - 1e-9))
    step = duration / count if duration > 0 else chunk_seconds
    return [
        ChunkSpan(i, i * step, (i + 1) * step if i + 1 < count else math.inf) for i in range(count)
    ]


def keep(span: ChunkSpan, offset: float, answer: ChunkAnswer) -> list[Spoken]:
    """The chunk's segments on the video's timeline (`offset`: where its audio began), those
    whose middle lies in its own span. Without segments, its text is one segment."""
    if answer.segments is None:
        text = answer.text.strip()
        end = offset + answer.seconds
        return [Spoken(max(span.start, offset), min(span.end, end), text)] if text else []
    kept = []
    for start, end, text in answer.segments:
        start, end = offset + start, offset + max(start, end)
        if span.start <= (start + end) / 2 < span.end and text.strip():
            kept.append(Spoken(round(start, 3), round(end, 3), text.strip()))
    return kept


def without_repeats(segments: list[Spoken]) -> list[Spoken]:
    """Segments in time order, less those heard twice at a chunk border. Both chunks hear
    the overlap, and a model's times at the very edge of its audio can drift by a second,
    so each may place a sentence's middle in its own span: a segment that overlaps the one
    before it and says the same words (or a part of them) is that same speech."""
    kept: list[Spoken] = []
    for segment in sorted(segments, key=lambda s: (s.start, s.end)):
        last = kept[-1] if kept else None
        if last is not None and _overlapping(last, segment) and _alike(last.text, segment.text):
            if len(_words(segment.text)) > len(_words(last.text)):
                kept[-1] = Spoken(last.start, max(last.end, segment.end), segment.text)
            continue
        kept.append(segment)
    return kept


def _words(text: str) -> list[str]:
    return re.findall(r"\w+", text.lower())


def _overlapping(one: Spoken, other: Spoken) -> bool:
    """They share at least half of the shorter one's time."""
    shared = min(one.end, other.end) - max(one.start, other.start)
    return shared > 0.5 * min(one.end - one.start, other.end - other.start)


def _alike(one: str, other: str) -> bool:
    """The same words, give or take what a model hears differently at its audio's edge."""
    a, b = _words(one), _words(other)
    return bool(a and b) and difflib.SequenceMatcher(None, a, b, autojunk=False).ratio() >= 0.6


@dataclass(frozen=True)
class ChunkAnswer:
    """A speech server's answer for one chunk; `segments` None when it gave none."""

    language: str
    text: str
    segments: list[tuple[float, float, str]] | None
    seconds: float  # the chunk's length of sound
