"""Prompts, the JSON schema a VLM is asked to fill, and lenient parsing of its answer."""

from __future__ import annotations

import json
import re
from typing import Any

from scenecap.core.tokens import HEARD_MAX_CHARS
from worker.vision.base import FrameMetadata

# Change it with any prompt or answer parsing below: captions made under another version are
# never reused (docs/api.md, "Cost controls").
PROMPT_VERSION = "2026-12-01"

SYSTEM_PROMPT = (
    "You are a precise video frame analyst. Describe only what is visible. "
    "Answer with one JSON object and nothing else."
)

_FIELD_HINTS = {
    "categories": "broad content categories (e.g. sports, cooking, news, nature)",
    "participants": "the people, animals or main objects present, each briefly described",
    "actions": "what is happening, as short verb phrases (e.g. running, pouring water)",
    "scene": "one short phrase for the setting (e.g. outdoor stadium, home kitchen)",
    "tags": "short keywords useful for search",
}


def heard_line(heard: str) -> str:
    """Speech as context: marked as heard, so the model does not describe it as seen."""
    if not heard:
        return ""
    return f'\nHeard at this time (speech, not seen): "{heard[:HEARD_MAX_CHARS]}"'


def frame_prompt(metadata_types: tuple[str, ...], timestamp: float, heard: str = "") -> str:
    fields = "\n".join(f'- "{name}": {_FIELD_HINTS[name]}' for name in metadata_types)
    return (
        f"This is a frame at {timestamp:.2f} s of a video. Return JSON with "
        f'"caption" (one or two sentences) and:\n{fields}\n'
        'Every field except "caption" and "scene" is a list of short lowercase strings.'
        f"{heard_line(heard)}"
    )


def frame_schema(metadata_types: tuple[str, ...]) -> dict[str, Any]:
    properties: dict[str, Any] = {"caption": {"type": "string"}}
    for name in metadata_types:
        properties[name] = (
            {"type": "string"}
            if name == "scene"
            else {"type": "array", "items": {"type": "string"}}
        )
    return {
        "type": "object",
        "properties": properties,
        "required": ["caption", *metadata_types],
        "additionalProperties": False,
    }


def segment_texts(
    metadata_types: tuple[str, ...], start: float, end: float, times: list[float], heard: str
) -> tuple[str, list[str], str]:
    """A segment request's text: its opening, one label per frame, and its instructions."""
    opening = (
        f"These are {len(times)} frames, in time order, from {start:.2f} s to {end:.2f} s of "
        "a video. Each is labelled with its time."
    )
    labels = [f"Frame at {time:.2f} s:" for time in times]
    fields = "\n".join(f'- "{name}": {_FIELD_HINTS[name]}' for name in metadata_types)
    instructions = (
        'Return one JSON object about the whole stretch: "caption" (two or three sentences on '
        "what happens, who moves and what changes between the frames) and:\n"
        f"{fields}\n"
        'Every field except "caption" and "scene" is a list of short lowercase strings.'
        f"{heard_line(heard)}"
    )
    return opening, labels, instructions


CHAPTER_PROMPT = (
    "Below are consecutive segments of one video, each with its number, its time and a "
    "description. Group them into chapters: runs of consecutive segments about one thing. "
    'Return one JSON object {"chapters": [{"first": <number>, "last": <number>, "title": '
    '"<a few words>", "summary": "<one or two sentences>"}]} whose chapters cover every '
    "segment below exactly once, in order. Do not invent details.\n\n"
)


def chapter_schema() -> dict[str, Any]:
    chapter = {
        "type": "object",
        "properties": {
            "first": {"type": "integer"},
            "last": {"type": "integer"},
            "title": {"type": "string"},
            "summary": {"type": "string"},
        },
        "required": ["first", "last", "title", "summary"],
        "additionalProperties": False,
    }
    return {
        "type": "object",
        "properties": {"chapters": {"type": "array", "items": chapter}},
        "required": ["chapters"],
        "additionalProperties": False,
    }


DESCRIPTION_PROMPT = (
    "Below are the chapters of one video, in order, with their times. Write one paragraph "
    "(at most 150 words) describing the whole video: what happens, who is in it, where, and "
    "how it changes over time. Do not invent details.\n\n"
)
CONDENSE_PROMPT = (
    "Below are consecutive parts of a longer video, in order, with their times. Summarise them "
    "in one paragraph (at most 150 words), keeping the times of the main events.\n\n"
)


def summary_prompt(lines: list[str], speech: str = "") -> str:
    return (
        "Below are timestamped captions of frames sampled from one video. Write one paragraph "
        "(at most 120 words) describing the whole video: what happens, who is in it, where, "
        "and how it changes over time. Do not invent details.\n\n"
        + "\n".join(lines)
        + speech_block(speech)
    )


def speech_block(speech: str) -> str:
    return f"\n\nWhat is said in the video (speech):\n{speech}" if speech else ""


CONDENSE_SPEECH_PROMPT = (
    "Below is part of what is said in a video, with times. Summarise it in a few sentences, "
    "keeping who says what and the times of the main points.\n\n"
)


_FENCE = re.compile(r"```(?:json)?\s*(.*?)```", re.S | re.I)


def parse_chapters(text: str) -> list[dict[str, Any]]:
    """The chapters a model answered (possibly fenced, possibly chatty); [] when unreadable."""
    document = _first_json_object(text)
    chapters = document.get("chapters") if document else None
    return [c for c in chapters if isinstance(c, dict)] if isinstance(chapters, list) else []


def parse_frame_answer(
    text: str, metadata_types: tuple[str, ...]
) -> tuple[str, FrameMetadata, bool]:
    """Read a model's answer leniently: fences, surrounding prose, loose types.

    Returns (caption, metadata, parsed); when no JSON object can be read, the whole text is
    the caption and parsed is False.
    """
    document = _first_json_object(text)
    if document is None:
        return text.strip()[:2000], {}, False
    caption = str(document.get("caption") or document.get("description") or "").strip()
    metadata: FrameMetadata = {}
    for name in metadata_types:
        value = document.get(name)
        if name == "scene":
            metadata[name] = _as_text(value)
        else:
            metadata[name] = _as_list(value)
    return caption, metadata, True


def _first_json_object(text: str) -> dict[str, Any] | None:
    candidates = [m.group(1) for m in _FENCE.finditer(text)] + [text]
    decoder = json.JSONDecoder()
    for candidate in candidates:
        for start in (i for i, ch in enumerate(candidate) if ch == "{"):
            try:
                value, _end = decoder.raw_decode(candidate, start)
            except json.JSONDecodeError:
                continue
            if isinstance(value, dict):
                return value
    return None


def _as_list(value: Any) -> list[str]:
    if value is None:
        return []
    if isinstance(value, str):
        value = [part for part in re.split(r"[,;\n]", value)]
    if not isinstance(value, list):
        value = [value]
    items = []
    for item in value:
        if isinstance(item, dict):
            item = item.get("name") or item.get("label") or ""
        text = str(item).strip()
        if text:
            items.append(text[:200])
    return items


def _as_text(value: Any) -> str:
    if isinstance(value, list):
        return ", ".join(_as_list(value))
    return "" if value is None else str(value).strip()[:500]
