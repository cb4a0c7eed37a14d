"""Merge per-frame answers into the timestamped results lists (deterministic)."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from worker.vision.base import CaptionedFrame, CaptionedSegment, Chapter

_SPACE = re.compile(r"\s+")
_EDGE_PUNCTUATION = " \t\n.,;:!?\"'`()[]{}"
_KEEP_S = ("ss", "us", "is", "ics", "ous", "news")


def singular(word: str) -> str:
    """Undo a regular English plural ("dogs" -> "dog", "boxes" -> "box", "cities" -> "city")."""
    if len(word) <= 3 or word.endswith(_KEEP_S):
        return word
    if word.endswith("ies"):
        return word[:-3] + "y"
    if word.endswith(("ches", "shes", "xes", "zzes", "sses")):
        return word[:-2]
    if word.endswith("s"):
        return word[:-1]
    return word


def normalise_name(name: str) -> str:
    """Lower-case, collapse whitespace, trim punctuation, singularise the last word."""
    text = _SPACE.sub(" ", name.lower()).strip(_EDGE_PUNCTUATION)
    if not text:
        return ""
    *head, last = text.split(" ")
    return " ".join([*head, singular(last)])


@dataclass
class _Occurrences:
    timestamps: list[float] = field(default_factory=list)


def merge_type(frames: list[CaptionedFrame], metadata_type: str) -> list[dict[str, Any]]:
    """Count each normalised name once per frame and list where it occurs."""
    seen: dict[str, _Occurrences] = {}
    for frame in sorted(frames, key=lambda f: (f.timestamp, f.index)):
        value = frame.metadata.get(metadata_type)
        names = [value] if isinstance(value, str) else list(value or [])
        for name in dict.fromkeys(normalise_name(str(n)) for n in names):
            if name:
                seen.setdefault(name, _Occurrences()).timestamps.append(frame.timestamp)
    merged = [
        {"name": name, "count": len(o.timestamps), "timestamps": o.timestamps}
        for name, o in seen.items()
    ]
    return sorted(merged, key=lambda item: (-item["count"], item["timestamps"][0], item["name"]))


def build_results(
    frames: list[CaptionedFrame],
    *,
    metadata_types: tuple[str, ...],
    description: str,
    scene_bounds: dict[int, tuple[float | None, float | None]] | None = None,
    unparsed: set[int] | None = None,
) -> dict[str, Any]:
    """Assemble a job's `results` (docs/api.md) from the captioned frames."""
    results: dict[str, Any] = {"description": description}
    for metadata_type in metadata_types:
        results[metadata_type] = merge_type(frames, metadata_type)
    results["frames"] = [
        _frame_entry(f, metadata_types, scene_bounds, unparsed or set())
        for f in sorted(frames, key=lambda f: f.index)
    ]
    return results


def _frame_entry(
    frame: CaptionedFrame,
    metadata_types: tuple[str, ...],
    scene_bounds: dict[int, tuple[float | None, float | None]] | None,
    unparsed: set[int],
) -> dict[str, Any]:
    entry: dict[str, Any] = {"index": frame.index, "timestamp": frame.timestamp}
    if scene_bounds is not None:
        entry["scene_start"], entry["scene_end"] = scene_bounds.get(frame.index, (None, None))
    entry["caption"] = frame.caption
    for metadata_type in metadata_types:
        entry[metadata_type] = frame.metadata.get(
            metadata_type, "" if metadata_type == "scene" else []
        )
    if frame.index in unparsed:
        entry["metadata_unparsed"] = True
    if frame.details:
        entry["measurements"] = frame.details
    return entry


def build_segment_results(
    segments: list[CaptionedSegment],
    chapters: list[Chapter],
    *,
    metadata_types: tuple[str, ...],
    description: str,
    segment_seconds: float,
    unparsed: set[int] | None = None,
) -> dict[str, Any]:
    """A segment-mode job's `results` (docs/api.md): `frames` is empty, the merged lists use
    segment start times, and `segments` and `chapters` say what happens when."""
    as_frames = [CaptionedFrame(s.index, s.start, s.caption, s.metadata) for s in segments]
    results: dict[str, Any] = {"description": description}
    for metadata_type in metadata_types:
        results[metadata_type] = merge_type(as_frames, metadata_type)
    results["frames"] = []
    results["segment_seconds"] = segment_seconds
    results["segments"] = [
        _segment_entry(s, metadata_types, unparsed or set())
        for s in sorted(segments, key=lambda s: s.index)
    ]
    results["chapters"] = [
        {
            "index": n,
            "start": c.start,
            "end": c.end,
            "title": c.title,
            "summary": c.summary,
            "segments": [c.first, c.last],
        }
        for n, c in enumerate(chapters)
    ]
    return results


def _segment_entry(
    segment: CaptionedSegment, metadata_types: tuple[str, ...], unparsed: set[int]
) -> dict[str, Any]:
    entry: dict[str, Any] = {
        "index": segment.index,
        "start": segment.start,
        "end": segment.end,
        "frame_timestamps": list(segment.frame_times),
        "caption": segment.caption,
    }
    for metadata_type in metadata_types:
        entry[metadata_type] = segment.metadata.get(
            metadata_type, "" if metadata_type == "scene" else []
        )
    if segment.index in unparsed:
        entry["metadata_unparsed"] = True
    if segment.details:
        entry["measurements"] = segment.details
    return entry
