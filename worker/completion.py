"""Answer a stored chat completion: fetch its images (or sample its videos), inline them as
JPEG data URIs within the model's budget, and ask the vision backend."""

from __future__ import annotations

import base64
import dataclasses
import tempfile
import time
from functools import partial
from pathlib import Path
from typing import Any

from scenecap.core.enums import JobStage
from scenecap.core.errors import MediaUnreachable, StoredObjectMissing
from scenecap.core.media import SNIFF_BYTES, decode_data_uri, is_data_uri, sniff_media, upload_id
from scenecap.core.settings import FRAME_PROMPT_TOKENS, Settings
from scenecap.store import MediaStore, paths
from worker.job.outcome import finish
from worker.job.progress import ProgressReporter
from worker.job.spec import JobSpec
from worker.job.usage import JobUsage
from worker.pipeline.extract import ExtractedFrame, ExtractOptions, extract_frames
from worker.pipeline.fetch import fetch_url
from worker.pipeline.plan import PlannedFrame, plan_even
from worker.pipeline.probe import Limits, probe_media
from worker.pipeline.sandbox import SandboxLimits, Send, run_sandboxed
from worker.runtime import Runtime

_MIN_TOKENS_PER_FRAME = 64


def answer_completion(spec: JobSpec, rt: Runtime, progress: ProgressReporter) -> None:
    """Answer the job and complete it; its results: {"completion": <an OpenAI
    chat.completion object>}."""
    settings, job_id, request = rt.settings, spec.id, spec.request
    assert request is not None  # a completion job always has its request
    progress.stage(JobStage.DOWNLOADING)
    max_tokens = int(request.get("max_tokens") or settings.caption_max_tokens)
    with tempfile.TemporaryDirectory(prefix="scenecap-") as directory:
        messages = inline_media(
            request["messages"], Path(directory), settings, max_tokens, rt.store
        )
    progress.stage(JobStage.CAPTIONING)
    answer = rt.run(
        rt.backend.complete(
            messages,
            model=request.get("model"),
            temperature=float(request.get("temperature", settings.vlm_temperature)),
            max_tokens=max_tokens,
        )
    )
    usage = JobUsage(answer.usage.prompt_tokens, answer.usage.completion_tokens)
    completion = {
        "id": f"chatcmpl-{job_id.hex}",
        "object": "chat.completion",
        "created": int(time.time()),
        "model": answer.model,
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": answer.content},
                "finish_reason": answer.finish_reason,
            }
        ],
        "usage": usage.as_dict(),
    }
    finish(rt, spec, progress, {"completion": completion}, usage, answer.usage)


def inline_media(
    messages: list[dict[str, Any]],
    directory: Path,
    settings: Settings,
    max_tokens: int,
    store: MediaStore,
) -> list[dict[str, Any]]:
    """Replace each image_url part by JPEG data URIs: one for an image, sampled frames for a
    video, all sized so the images, the text and the answer fit the model's context."""
    sources = [
        _fetch(part["image_url"]["url"], directory, n, settings, store)
        for n, part in enumerate(p for m in messages for p in _parts(m) if p["type"] == "image_url")
    ]
    slots = sum(settings.completion_video_frames if kind == "video" else 1 for _p, kind in sources)
    text_tokens = sum(len(p.get("text", "")) for m in messages for p in _parts(m)) // 3
    room = settings.vlm_context_tokens - max_tokens - FRAME_PROMPT_TOKENS - text_tokens
    per_slot = max(_MIN_TOKENS_PER_FRAME, room // max(1, slots))
    max_pixels = min(settings.frame_max_pixels, per_slot * 28 * 28)
    # Decoded in the sandbox, like a media job's frames (the media is as untrusted).
    replaced = iter(
        run_sandboxed(
            partial(_as_parts, path, kind, settings, max_pixels), SandboxLimits.of(settings)
        )
        for path, kind in sources
    )
    out = []
    for message in messages:
        if isinstance(message["content"], str):
            out.append(message)
            continue
        content: list[dict[str, Any]] = []
        for part in message["content"]:
            content.extend(next(replaced) if part["type"] == "image_url" else [part])
        out.append({**message, "content": content})
    return out


def _parts(message: dict[str, Any]) -> list[dict[str, Any]]:
    content = message["content"]
    return [{"type": "text", "text": content}] if isinstance(content, str) else list(content)


def _fetch(
    url: str, directory: Path, number: int, settings: Settings, store: MediaStore
) -> tuple[Path, str]:
    """An image part's media as a file: a data: URI's bytes, an upload, or a download."""
    path = directory / f"{number}"
    uploaded = upload_id(url)
    if is_data_uri(url):
        path.write_bytes(decode_data_uri(url, max_bytes=settings.max_media_bytes))
    elif uploaded is not None:
        try:
            store.download(paths.upload(uploaded), path)
        except StoredObjectMissing:
            raise MediaUnreachable("the upload has expired") from None
    else:
        fetch_url(url, path, settings)
    with path.open("rb") as media:
        return path, sniff_media(media.read(SNIFF_BYTES)).kind


def _as_parts(
    path: Path, kind: str, settings: Settings, max_pixels: int, _send: Send
) -> list[dict[str, Any]]:
    """In the sandbox: an image's one part, or a video's sampled frames after their times."""
    info = probe_media(path, Limits.of(settings), is_image=kind == "image")
    if kind == "image":
        plan = [PlannedFrame(0, 0.0)]
    else:
        plan = plan_even(
            info.duration, settings.completion_video_frames, settings.min_frame_gap_seconds
        )
    options = dataclasses.replace(ExtractOptions.of(settings), max_pixels=max_pixels)
    frames = list(extract_frames(path, plan, options, info.timeline))
    parts: list[dict[str, Any]] = [_image_part(frame) for frame in frames]
    if kind == "video":
        times = ", ".join(f"{frame.timestamp:.1f}" for frame in frames)
        parts.insert(
            0, {"type": "text", "text": f"Frames of a {info.duration:.1f} s video at {times} s:"}
        )
    return parts


def _image_part(frame: ExtractedFrame) -> dict[str, Any]:
    data = base64.b64encode(frame.jpeg).decode()
    return {"type": "image_url", "image_url": {"url": f"data:image/jpeg;base64,{data}"}}
