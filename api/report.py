"""The job report: one self-contained HTML page (thumbnails inline) a person can read.

Rendered on the server from the job row and its stored frames; while the job runs, the page
follows its progress over the job's event stream and reloads itself when the job ends.
"""

from __future__ import annotations

import base64
import json
import uuid
from dataclasses import dataclass
from html import escape
from typing import Any

from api.schemas import JobOut
from db.models import JobFrame, JobSegment
from scenecap.core.enums import JobStatus
from scenecap.core.errors import StoredObjectMissing
from scenecap.core.media import TRANSCRIPT
from scenecap.store import MediaStore, paths

_STYLE = """
:root { font-family: system-ui, sans-serif; color: #1d2433; background: #f6f7fb; }
body { max-width: 1100px; margin: 2rem auto; padding: 0 1rem; }
h1 { font-size: 1.4rem; margin-bottom: .2rem; word-break: break-all; }
.muted { color: #5f6b7a; font-size: .9rem; }
.status { display: inline-block; padding: .1rem .5rem; border-radius: .3rem; font-weight: 600;
  background: #e3e8f0; }
.status.COMPLETED { background: #d5f5e3; } .status.FAILED { background: #fadbd8; }
.bar { height: .6rem; background: #e3e8f0; border-radius: .3rem; overflow: hidden;
  margin: .5rem 0; }
.bar > div { height: 100%; background: #3867d6; transition: width .3s; }
.timeline { position: relative; height: 2.2rem; background: #e3e8f0; border-radius: .3rem;
  margin: 1rem 0 .3rem; }
.timeline .scene { position: absolute; top: 0; bottom: 0; border-left: 2px solid #8854d0; }
.timeline a { position: absolute; top: .35rem; width: .5rem; height: 1.5rem;
  margin-left: -.25rem; background: #3867d6; border-radius: .2rem; }
.timeline a.segment { margin-left: 0; border-radius: 0; background: #7f9cf5;
  border-right: 1px solid white; box-sizing: border-box; }
.chapters { position: relative; height: 1.6rem; margin-top: 1rem; }
.chapters div { position: absolute; top: 0; bottom: 0; overflow: hidden; white-space: nowrap;
  text-overflow: ellipsis; font-size: .8rem; padding: .25rem .4rem; box-sizing: border-box;
  border-left: 2px solid #8854d0; background: #ece4f7; }
.speech { position: relative; height: 1rem; margin: .2rem 0; background: #f0f2f7;
  border-radius: .3rem; }
.speech span { position: absolute; top: 0; bottom: 0; min-width: 2px; background: #20bf6b; }
.transcript time { color: #5f6b7a; margin-right: .5rem; font-variant-numeric: tabular-nums; }
section { background: white; border-radius: .5rem; padding: 1rem 1.2rem; margin: 1rem 0;
  box-shadow: 0 1px 2px rgba(0,0,0,.06); }
.chips span { display: inline-block; background: #eef1f7; border-radius: 1rem;
  padding: .15rem .6rem; margin: .15rem; font-size: .9rem; }
.chips small { color: #5f6b7a; }
.frames { display: grid; grid-template-columns: repeat(auto-fill, minmax(240px, 1fr));
  gap: 1rem; }
.frame { background: white; border-radius: .5rem; overflow: hidden;
  box-shadow: 0 1px 2px rgba(0,0,0,.08); }
.frame img { width: 100%; display: block; background: #ccd; }
.frame .body { padding: .5rem .7rem; font-size: .9rem; }
.frame time { font-weight: 600; }
table { border-collapse: collapse; } td { padding: .1rem .8rem .1rem 0; }
#find input { width: 100%; padding: .5rem; font-size: 1rem; box-sizing: border-box;
  border: 1px solid #ccd3e0; border-radius: .3rem; }
#find-hits { margin: .5rem 0 0; padding-left: 1.2rem; font-size: .9rem; }
#find-hits a { font-weight: 600; margin-right: .4rem; }
.hit { outline: 3px solid #f7b731; } :target { outline: 3px solid #3867d6; }
"""

# Finds in the page itself (it is self-contained, and read with a share link, not an API
# key): every word must appear, "a phrase" as written, `or` between two words either, -word
# not. Enter jumps to the first match; each match links to its moment.
_FIND = r"""
const query = document.getElementById("find-q"), list = document.getElementById("find-hits");
const items = [...document.querySelectorAll("[data-find]")]
  .map((el) => ({el, text: el.dataset.find.toLowerCase()}));
function terms(typed) {
  const all = [], not = []; let either = false;
  for (const m of typed.toLowerCase().matchAll(/(-?)(?:"([^"]*)"?|(\S+))/g)) {
    const word = (m[2] ?? m[3] ?? "").trim();
    if (!word) continue;
    if (!m[1] && word === "or") { either = all.length > 0; continue; }
    if (m[1]) not.push(word);
    else if (either) { all[all.length - 1].push(word); either = false; }
    else all.push([word]);
  }
  return [all, not];
}
function find() {
  const [all, not] = terms(query.value);
  for (const item of items) item.el.classList.remove("hit");
  list.replaceChildren();
  const hits = all.length ? items.filter((i) => all.every((g) => g.some((w) => i.text.includes(w)))
    && !not.some((w) => i.text.includes(w))) : [];
  for (const item of hits) {
    item.el.classList.add("hit");
    const entry = document.createElement("li"), link = document.createElement("a");
    link.href = item.el.dataset.go || "#" + item.el.id;
    link.textContent = item.el.dataset.at;
    entry.append(link, item.el.dataset.find.slice(0, 200));
    list.append(entry);
  }
  document.getElementById("find-count").textContent =
    !all.length ? "" : hits.length ? hits.length + " found" : "nothing found";
}
query.addEventListener("input", find);
document.getElementById("find").addEventListener("submit", (event) => {
  event.preventDefault();
  const first = list.querySelector("a");
  if (first) location.hash = first.getAttribute("href");
});
"""

_LIVE = """
const source = new EventSource(%s);
source.addEventListener("progress", (message) => {
  const job = JSON.parse(message.data);
  document.getElementById("percent").textContent = job.percent_complete + "%%";
  document.getElementById("stage").textContent = job.stage.replace("_", " ");
  document.getElementById("bar").style.width = job.percent_complete + "%%";
});
for (const end of ["completed", "failed", "cancelled"]) {
  source.addEventListener(end, () => { source.close(); location.reload(); });
}
"""


@dataclass(frozen=True)
class ReportFrame:
    """A captioned frame, or in segment mode a captioned segment (`scene` is its span)."""

    index: int
    timestamp: float
    caption: str
    metadata: dict[str, Any]
    scene: tuple[float, float] | None
    thumbnail: bytes | None

    @classmethod
    def of_segment(cls, row: JobSegment, thumbnail: bytes | None) -> ReportFrame:
        return cls(
            row.index,
            row.start,
            row.caption or "",
            row.segment_metadata or {},
            (row.start, row.end),
            thumbnail,
        )

    @classmethod
    def of(cls, row: JobFrame, thumbnail: bytes | None) -> ReportFrame:
        scene = (
            (row.scene_start, row.scene_end)
            if row.scene_start is not None and row.scene_end is not None
            else None
        )
        return cls(row.index, row.timestamp, row.caption, row.frame_metadata, scene, thumbnail)


def thumbnail_of(store: MediaStore, job_id: uuid.UUID, index: int) -> bytes | None:
    """A frame's thumbnail from the store (None if it is gone: the page shows the caption)."""
    try:
        return store.get(paths.thumbnail(job_id, index))
    except StoredObjectMissing:
        return None


def clock(seconds: float) -> str:
    minutes, rest = divmod(max(0.0, seconds), 60)
    return f"{int(minutes)}:{rest:06.3f}"


def render_report(job: JobOut, frames: list[ReportFrame], events_url: str | None) -> str:
    """The whole page; `events_url` (with its token) when the job is still running."""
    running = job.status in (JobStatus.PENDING, JobStatus.PROCESSING)
    duration = float((job.media or {}).get("duration") or 0.0) or max(
        (f.timestamp for f in frames), default=0.0
    )
    parts = [
        "<!doctype html><html lang='en'><head><meta charset='utf-8'>",
        "<meta name='viewport' content='width=device-width, initial-scale=1'>",
        f"<title>scenecap report: {escape(job.media_url[:80])}</title>",
        f"<style>{_STYLE}</style></head><body>",
        _header(job),
        _finder(job),
        _chapters(job, duration),
        _segment_timeline(frames, duration)
        if job.segment_seconds
        else _timeline(frames, duration, job.use_scenes),
        _speech_timeline(job, duration),
        _summary(job),
        _transcript(job),
        _frames(frames, "Segments" if job.segment_seconds else "Frames"),
    ]
    if running and events_url is not None:
        parts.append(f"<script>{_LIVE % _js_string(events_url)}</script>")
    if job.results:
        parts.append(f"<script>{_FIND}</script>")
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
    return (
        f"<header><h1>{escape(job.media_url[:300])}</h1>"
        f"<p class='muted'>job {job.job_id} · {' · '.join(facts)}"
        f"{' · tag ' + escape(job.job_tag) if job.job_tag else ''}</p>"
        f"<p><span class='status {job.status.value}'>{job.status.value}</span> "
        f"<span id='stage'>{escape(job.stage.replace('_', ' '))}</span> · "
        f"<span id='percent'>{job.percent_complete}%</span></p>"
        f"<div class='bar'><div id='bar' style='width:{job.percent_complete}%'></div></div>"
        f"{error}"
        f"{'<table class=muted>' + timings + '</table>' if timings else ''}</header>"
    )


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
        f"<a href='#frame-{f.index}' title='{clock(f.timestamp)}' "
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


def _frames(frames: list[ReportFrame], heading: str) -> str:
    cards = []
    for frame in frames:
        image = (
            f"<img alt='frame at {clock(frame.timestamp)}' loading='eager' "
            f"src='data:image/jpeg;base64,{base64.b64encode(frame.thumbnail).decode()}'>"
            if frame.thumbnail
            else ""
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
    return f"data-at='{clock(at)}' data-find='{escape(text)}'{go}"


def _js_string(value: str) -> str:
    # A JSON string is a JS string literal; escape '<' so it cannot close the script tag.
    return json.dumps(value).replace("<", "\\u003c")
