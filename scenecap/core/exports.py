"""A completed job's results as timed cues, in the formats people load elsewhere: JSON, CSV,
SubRip (.srt) and WebVTT (.vtt) (docs/api.md, "Exports"). Pure functions of the results.

A cue is a stretch of the video and what was found in it: a frame's caption (from its time
to the next frame's, the last to the end of the video), a segment's caption, a chapter, a
stretch of speech, or text read on screen.
"""

from __future__ import annotations

import csv
import io
import json
from dataclasses import asdict, dataclass
from typing import Any, Literal

Format = Literal["json", "csv", "srt", "vtt"]
Kind = Literal["caption", "chapter", "speech", "text"]
KINDS: tuple[Kind, ...] = ("caption", "chapter", "speech", "text")
MEDIA_TYPES: dict[str, str] = {
    "json": "application/json",
    "csv": "text/csv; charset=utf-8",
    "srt": "application/x-subrip; charset=utf-8",
    "vtt": "text/vtt; charset=utf-8",
}
# A still frame's caption, when nothing tells how long it stays on screen (an image).
STILL_SECONDS = 5.0


@dataclass(frozen=True)
class Cue:
    start: float
    end: float
    kind: Kind
    text: str


def cues_of(results: dict[str, Any], duration: float, kinds: tuple[Kind, ...] = KINDS) -> list[Cue]:
    """The results' cues of these kinds, in time order (then in the order of KINDS)."""
    found: list[Cue] = []
    if "caption" in kinds:
        found += _frame_cues(results.get("frames") or [], duration)
        found += [
            Cue(float(s["start"]), float(s["end"]), "caption", str(s["caption"]))
            for s in results.get("segments") or []
        ]
    if "chapter" in kinds:
        found += [
            Cue(float(c["start"]), float(c["end"]), "chapter", f"{c['title']}: {c['summary']}")
            for c in results.get("chapters") or []
        ]
    if "speech" in kinds:
        spoken = (results.get("transcript") or {}).get("segments") or []
        found += [Cue(float(s["start"]), float(s["end"]), "speech", str(s["text"])) for s in spoken]
    if "text" in kinds:
        found += [
            Cue(float(t["start"]), float(t["end"]), "text", str(t["text"]))
            for t in results.get("text") or []
        ]
    order = {kind: n for n, kind in enumerate(KINDS)}
    return sorted(
        (c for c in found if c.text.strip()), key=lambda c: (c.start, order[c.kind], c.end)
    )


def _frame_cues(frames: list[dict[str, Any]], duration: float) -> list[Cue]:
    times = [float(f["timestamp"]) for f in frames]
    cues = []
    for n, frame in enumerate(frames):
        start = times[n]
        if n + 1 < len(times):
            end = times[n + 1]
        elif duration > start:
            end = duration
        else:
            end = start + STILL_SECONDS
        cues.append(Cue(start, max(end, start), "caption", str(frame["caption"])))
    return cues


def render(cues: list[Cue], format: Format, job: dict[str, Any]) -> str:
    """The cues as a document of the format; `job` names what they are of (JSON only)."""
    if format == "json":
        document = {
            "job_id": str(job["job_id"]),
            "media_url": job["media_url"],
            "cues": [asdict(c) for c in cues],
        }
        return json.dumps(document, ensure_ascii=False)
    if format == "csv":
        out = io.StringIO()
        writer = csv.writer(out, lineterminator="\r\n")
        writer.writerow(["start", "end", "kind", "text"])
        writer.writerows([f"{c.start:.3f}", f"{c.end:.3f}", c.kind, c.text] for c in cues)
        return out.getvalue()
    if format == "srt":
        return "".join(
            f"{n}\n{_clock(c.start, ',')} --> {_clock(c.end, ',')}\n{_label(c)}\n\n"
            for n, c in enumerate(cues, 1)
        )
    blocks = [
        f"{n}\n{_clock(c.start, '.')} --> {_clock(c.end, '.')}\n{_label(c)}\n\n"
        for n, c in enumerate(cues, 1)
    ]
    return "WEBVTT\n\n" + "".join(blocks)


def _label(cue: Cue) -> str:
    """A subtitle's text: the kind in brackets (but for captions), on lines with no blank one
    (a blank line ends a cue in both formats)."""
    text = " ".join(cue.text.split())
    return text if cue.kind == "caption" else f"[{cue.kind}] {text}"


def _clock(seconds: float, separator: str) -> str:
    millis = round(max(0.0, seconds) * 1000)
    hours, millis = divmod(millis, 3_600_000)
    minutes, millis = divmod(millis, 60_000)
    whole, millis = divmod(millis, 1000)
    return f"{hours:02d}:{minutes:02d}:{whole:02d}{separator}{millis:03d}"
