"""The job report: one HTML page a person can read, its pictures loaded lazily from the
thumbnail route.

Rendered on the server from the job row and its stored frames; while the job runs, the page
follows its progress over the job's event stream and reloads itself when the job ends. The
page's own requests (its stream, its pictures) carry a view token, as a browser's image and
EventSource requests cannot send the API key.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from html import escape
from typing import Any

from api.report_assets import FIND, LIVE, PLAYER, STYLE
from db.models import JobFrame, JobSegment
from scenecap.core.enums import JobStatus
from scenecap.core.media import TRANSCRIPT
from scenecap.schemas import JobOut


@dataclass(frozen=True)
class ReportFrame:
    """A captioned frame, or in segment mode a captioned segment (`scene` is its span)."""

    index: int
    timestamp: float
    caption: str
    metadata: dict[str, Any]
    scene: tuple[float, float] | None

    @classmethod
    def of_segment(cls, row: JobSegment) -> ReportFrame:
        return cls(
            row.index,
            row.start,
            row.caption or "",
            row.segment_metadata or {},
            (row.start, row.end),
        )

    @classmethod
    def of(cls, row: JobFrame) -> ReportFrame:
        scene = (
            (row.scene_start, row.scene_end)
            if row.scene_start is not None and row.scene_end is not None
            else None
        )
        return cls(row.index, row.timestamp, row.caption, row.frame_metadata, scene)


def clock(seconds: float) -> str:
    minutes, rest = divmod(max(0.0, seconds), 60)
    return f"{int(minutes)}:{rest:06.3f}"


def render_report(job: JobOut, frames: list[ReportFrame], token: str) -> str:
    """The whole page; its stream (while the job runs) and its pictures carry `token`."""
    base = f"/v2/media/categories/{job.job_id}"
    pictures = f"{base}/thumbnails/{{index}}.jpg?token={token}"
    running = job.status in (JobStatus.PENDING, JobStatus.PROCESSING)
    duration = float((job.media or {}).get("duration") or 0.0) or max(
        (f.timestamp for f in frames), default=0.0
    )
    parts = [
        "<!doctype html><html lang='en'><head><meta charset='utf-8'>",
        "<meta name='viewport' content='width=device-width, initial-scale=1'>",
        f"<title>scenecap report: {escape((job.media_name or job.media_url)[:80])}</title>",
        f"<style>{STYLE}</style></head><body>",
        _header(job),
        _player(job, f"{base}/media?token={token}"),
        _finder(job),
        _chapters(job, duration),
        _segment_timeline(frames, duration)
        if job.segment_seconds
        else _timeline(frames, duration, job.use_scenes),
        _speech_timeline(job, duration),
        _summary(job),
        _transcript(job),
        _frames(frames, "Segments" if job.segment_seconds else "Frames", pictures),
    ]
    if running:
        events_url = f"{base}/events?token={token}"
        parts.append(f"<script>{LIVE % _js_string(events_url)}</script>")
    if job.results:
        parts.append(f"<script>{FIND}</script>")
    if job.media_type == "video":
        parts.append(f"<script>{PLAYER}</script>")
    parts.append("</body></html>")
    return "".join(parts)


def _header(job: JobOut) -> str:
    media = job.media or {}
    facts = []  # numbers only, so nothing here needs escaping
    if media.get("duration"):
        facts.append(f"{clock(float(media['duration']))} long")
    if media.get("width") and media.get("height"):
        facts.append(f"{media['width']}&times;{media['height']}")
    if media.get("fps"):
        facts.append(f"{float(media['fps']):.2f} fps")
    timings = "".join(
        f"<tr><td>{escape(stage.replace('_', ' '))}</td><td>{seconds:.2f} s</td></tr>"
        for stage, seconds in (job.timings or {}).items()
    )
    error = (
        f"<p><strong>{escape(job.error.code)}</strong>: {escape(job.error.message)}</p>"
        if job.error
        else ""
    )
    error += _cost_notes(job)
    return (
        f"<header><h1>{escape((job.media_name or job.media_url)[:300])}</h1>"
        f"{_source(job)}"
        f"<p class='muted'>job {job.job_id} · {' · '.join(facts)}"
        f"{' · tag ' + escape(job.job_tag) if job.job_tag else ''}</p>"
        f"<p><span class='status {job.status.value}'>{job.status.value}</span> "
        f"<span id='stage'>{escape(job.stage.replace('_', ' '))}</span> · "
        f"<span id='percent'>{job.percent_complete}%</span></p>"
        f"<div class='bar'><div id='bar' style='width:{job.percent_complete}%'></div></div>"
        f"{error}"
        f"{'<table class=muted>' + timings + '</table>' if timings else ''}</header>"
    )


def _source(job: JobOut) -> str:
    """The media URL under its name, when the page is titled by the name."""
    if not job.media_name:
        return ""
    return f"<p class='muted'>{escape(job.media_url[:300])}</p>"


def _cost_notes(job: JobOut) -> str:
    """What the cost controls did to the job (docs/api.md, "Cost controls")."""
    usage, notes = job.usage or {}, []
    if usage.get("reused_frames") or usage.get("reused_segments"):
        notes.append(
            "Reused: the captions of an earlier job of yours on the same media, model and plan "
            "(no model call)."
        )
    if (job.results or {}).get("partial"):
        notes.append(
            "Partial: the token budget ran out, so some frames or segments (or the summary) "
            "were left out."
        )
    return "".join(f"<p class='note'>{note}</p>" for note in notes)


def _timeline(frames: list[ReportFrame], duration: float, use_scenes: bool) -> str:
    if not frames or duration <= 0:
        return ""
    marks = []
    if use_scenes:
        starts = sorted({f.scene[0] for f in frames if f.scene is not None and f.scene[0] > 0})
        marks += [
            f"<div class='scene' style='left:{100 * s / duration:.3f}%'></div>" for s in starts
        ]
    marks += [
        f"<a href='#frame-{f.index}' title='{clock(f.timestamp)}' data-seek='{f.timestamp:.3f}' "
        f"style='left:{100 * min(f.timestamp, duration) / duration:.3f}%'></a>"
        for f in frames
    ]
    return f"<div class='timeline' aria-label='timeline'>{''.join(marks)}</div>"


def _segment_timeline(segments: list[ReportFrame], duration: float) -> str:
    """One block per captioned segment, as wide as it lasts."""
    if not segments or duration <= 0:
        return ""
    blocks = [
        f"<a class='segment' href='#frame-{s.index}' title='{clock(s.scene[0])}' "
        f"data-seek='{s.scene[0]:.3f}' "
        f"style='left:{100 * s.scene[0] / duration:.3f}%;"
        f"width:{100 * (s.scene[1] - s.scene[0]) / duration:.3f}%'></a>"
        for s in segments
        if s.scene is not None
    ]
    return f"<div class='timeline' aria-label='timeline'>{''.join(blocks)}</div>"


def _chapters(job: JobOut, duration: float) -> str:
    """The chapters as bands over the timeline, titled."""
    chapters = (job.results or {}).get("chapters") or []
    if not chapters or duration <= 0:
        return ""
    bands = [
        f"<div title='{escape(c['summary'])}' style='left:{100 * c['start'] / duration:.3f}%;"
        f"width:{100 * (c['end'] - c['start']) / duration:.3f}%' "
        f"{_findable(c['start'], c['title'] + ': ' + c['summary'], c.get('segments'))}>"
        f"{escape(c['title'])}</div>"
        for c in chapters
    ]
    return f"<div class='chapters' aria-label='chapters'>{''.join(bands)}</div>"


def _speech_timeline(job: JobOut, duration: float) -> str:
    """When speech is heard, as marks under the timeline."""
    spoken = ((job.results or {}).get("transcript") or {}).get("segments") or []
    if not spoken or duration <= 0:
        return ""
    marks = [
        f"<span title='{clock(s['start'])} {escape(s['text'][:200])}' "
        f"style='left:{100 * min(s['start'], duration) / duration:.3f}%;"
        f"width:{100 * max(0.0, min(s['end'], duration) - s['start']) / duration:.3f}%'></span>"
        for s in spoken
    ]
    return f"<div class='speech' aria-label='speech'>{''.join(marks)}</div>"


def _transcript(job: JobOut) -> str:
    transcript = (job.results or {}).get("transcript")
    if not transcript or not transcript.get("segments"):
        return ""
    lines = "".join(
        f"<p id='said-{i}' {_findable(s['start'], s['text'])}>"
        f"<time>{clock(s['start'])}</time>{escape(s['text'])}</p>"
        for i, s in enumerate(transcript["segments"])
    )
    language = f" ({escape(transcript['language'])})" if transcript.get("language") else ""
    heading = f"<h2>Transcript{language}</h2>"
    return f"<section class='transcript' id='transcript'>{heading}{lines}</section>"


def _summary(job: JobOut) -> str:
    results = job.results or {}
    if not results:
        return ""
    blocks = []
    if results.get("description"):
        blocks.append(f"<h2>Description</h2><p>{escape(results['description'])}</p>")
    for name in job.metadata:
        if name == TRANSCRIPT:  # shown on its own, below
            continue
        entries = results.get(name) or []
        if not entries:
            continue
        chips = "".join(
            f"<span>{escape(str(entry['name']))} <small>&times;{entry['count']} at "
            f"{escape(', '.join(clock(t) for t in entry['timestamps'][:6]))}"
            f"{'…' if len(entry['timestamps']) > 6 else ''}</small></span>"
            for entry in entries
        )
        blocks.append(f"<h3>{escape(name.capitalize())}</h3><div class='chips'>{chips}</div>")
    return f"<section id='summary'>{''.join(blocks)}</section>"


def _frames(frames: list[ReportFrame], heading: str, pictures: str) -> str:
    cards = []
    for frame in frames:
        # A picture the store no longer has hides itself: the caption is still there.
        image = (
            f"<img alt='frame at {clock(frame.timestamp)}' loading='lazy' "
            f"src='{escape(pictures.format(index=frame.index))}' onerror='this.remove()'>"
        )
        if frame.scene is None:
            scene = ""
        elif heading == "Segments":  # a segment's span: from its time shown to its end
            scene = f" &ndash; {clock(frame.scene[1])}"
        else:
            scene = f" · scene {clock(frame.scene[0])}&ndash;{clock(frame.scene[1])}"
        labels = [
            str(value)
            for values in frame.metadata.values()
            for value in (values if isinstance(values, list) else [values])
            if value
        ]
        chips = "".join(f"<span>{escape(label)}</span>" for label in labels)
        words = " ".join([frame.caption, *labels])
        cards.append(
            f"<article class='frame' id='frame-{frame.index}' "
            f"{_findable(frame.timestamp, words)}>{image}<div class='body'>"
            f"<time>{clock(frame.timestamp)}</time><span class='muted'>{scene}</span>"
            f"<p class='caption'>{escape(frame.caption)}</p>"
            f"<div class='chips'>{chips}</div></div></article>"
        )
    title = f"<h2>{heading} ({len(frames)})</h2>"
    return f"{title}<div class='frames'>{''.join(cards)}</div>"


def _player(job: JobOut, source: str) -> str:
    """The video itself, while the service keeps its media: a frame, a segment, a chapter,
    a line of speech or a search hit clicked seeks it there. Gone once the media expires
    (MEDIA_RETENTION_HOURS): the player removes itself, the page stays."""
    if job.media_type != "video":
        return ""
    return f"<video id='player' controls preload='metadata' src='{escape(source)}'></video>"


def _finder(job: JobOut) -> str:
    if not job.results:
        return ""
    return (
        "<section><form id='find' role='search'><input id='find-q' type='search' "
        "placeholder='Find in this video: words, &quot;a phrase&quot;, or, -word' "
        "aria-label='Find in this video'></form>"
        "<span id='find-count' class='muted'></span><ol id='find-hits'></ol></section>"
    )


def _findable(at: float, text: str, segments: list[int] | None = None) -> str:
    """The attributes that make an element a match for the page's search box."""
    go = f" data-go='#frame-{segments[0]}'" if segments else ""
    return f"data-at='{clock(at)}' data-seek='{at:.3f}' data-find='{escape(text)}'{go}"


def _js_string(value: str) -> str:
    # A JSON string is a JS string literal; escape '<' so it cannot close the script tag.
    return json.dumps(value).replace("<", "\\u003c")
