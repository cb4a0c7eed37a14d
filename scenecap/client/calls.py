"""The client's one core, shared by the sync and async clients as httpx shares its own:
how each request is built and how its answer is read (docs/api.md)."""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Generic, TypedDict, TypeVar

import httpx
from pydantic import BaseModel

from scenecap.core.errors import WaitTimeout, error_for_code
from scenecap.core.media import SNIFF_BYTES, sniff_media
from scenecap.schemas import (
    ImageResult,
    JobAccepted,
    JobList,
    JobOut,
    ShareLink,
    UploadOut,
)
from scenecap.schemas.completions import CompletionResponse
from scenecap.schemas.cost import BatchResponse, UsageReport
from scenecap.schemas.search import AskAnswer, SearchPage

T = TypeVar("T")
M = TypeVar("M", bound=BaseModel)
TERMINAL = ("COMPLETED", "FAILED", "CANCELLED")
ProgressCallback = Callable[[JobOut], None]


class JobOptions(TypedDict, total=False):
    """The optional fields of a job request (see the API's POST /v2/media/categories)."""

    metadata: list[str]
    use_scenes: bool
    scene_threshold: float  # with use_scenes: the detector's own scale (ContentDetector: 27)
    min_scene_seconds: float  # with use_scenes: the shortest scene cut (default 0.5)
    webhook_url: str
    job_tag: str
    max_frames: int
    model: str
    segment_seconds: float  # segment mode: caption every stretch of this many seconds
    frames_per_segment: int
    max_total_tokens: int  # the most model tokens the job may use


@dataclass(frozen=True)
class JobEvent:
    """One Server-Sent Event: `progress`, or the terminal `completed|failed|cancelled`."""

    event: str
    data: dict[str, Any]

    @property
    def terminal(self) -> bool:
        return self.event in ("completed", "failed", "cancelled")


@dataclass(frozen=True)
class Call(Generic[T]):
    """One request to make, and how to read its answer."""

    method: str
    path: str
    parse: Callable[[httpx.Response], T]
    json: Any = None
    params: Mapping[str, Any] | None = None
    headers: Mapping[str, str] = field(default_factory=dict)
    content: Any = None  # a request body streamed from an iterator (uploads)


def raise_for_error(response: httpx.Response) -> None:
    """Raise the scenecap error a failed response names (its code, message and details)."""
    if response.is_success:
        return
    try:
        body = response.json()["error"]
        code, message, details = body["code"], body["message"], body.get("details") or {}
    except (ValueError, KeyError, TypeError):
        code, message, details = "HTTP_ERROR", response.text[:500], {}
    error = error_for_code(code, message, {**details, "code": code})
    error.status = response.status_code  # type: ignore[attr-defined]
    raise error


def _model(model: type[M]) -> Callable[[httpx.Response], M]:
    def parse(response: httpx.Response) -> M:
        raise_for_error(response)
        return model.model_validate(response.json())

    return parse


def _text(response: httpx.Response) -> str:
    raise_for_error(response)
    return response.text


def _created(response: httpx.Response) -> JobAccepted | ImageResult:
    raise_for_error(response)
    data = response.json()
    return (
        JobAccepted.model_validate(data) if "job_id" in data else ImageResult.model_validate(data)
    )


class _Calls:
    """Every endpoint as a Call: what both clients send, and how both read the answer."""

    @staticmethod
    def create(
        media_url: str, idempotency_key: str | None, options: JobOptions
    ) -> Call[JobAccepted | ImageResult]:
        headers = {"Idempotency-Key": idempotency_key} if idempotency_key else {}
        body = {"media_url": media_url, **options}
        return Call("POST", "/v2/media/categories", _created, json=body, headers=headers)

    @staticmethod
    def create_batch(
        requests: Sequence[Mapping[str, Any]], idempotency_key: str | None
    ) -> Call[BatchResponse]:
        headers = {"Idempotency-Key": idempotency_key} if idempotency_key else {}
        body = {"requests": [dict(r) for r in requests]}
        path = "/v2/media/categories/batch"
        return Call("POST", path, _model(BatchResponse), json=body, headers=headers)

    @staticmethod
    def usage(first: str | None, last: str | None) -> Call[UsageReport]:
        params = {name: value for name, value in (("from", first), ("to", last)) if value}
        return Call("GET", "/v2/usage", _model(UsageReport), params=params)

    @staticmethod
    def get(job_id: str | uuid.UUID) -> Call[JobOut]:
        return Call("GET", f"/v2/media/categories/{job_id}", _model(JobOut))

    @staticmethod
    def list(
        limit: int, status: str | None, cursor: str | None, job_tag: str | None = None
    ) -> Call[JobList]:
        params = {"limit": limit, "status": status, "cursor": cursor, "job_tag": job_tag}
        present = {name: value for name, value in params.items() if value is not None}
        return Call("GET", "/v2/media/categories", _model(JobList), params=present)

    @staticmethod
    def export(job_id: str | uuid.UUID, format: str, kinds: Sequence[str]) -> Call[str]:
        params = {"format": format, "kind": list(kinds)} if kinds else {"format": format}
        return Call("GET", f"/v2/media/categories/{job_id}/export", _text, params=params)

    @staticmethod
    def cancel(job_id: str | uuid.UUID) -> Call[JobOut]:
        return Call("DELETE", f"/v2/media/categories/{job_id}", _model(JobOut))

    @staticmethod
    def share(job_id: str | uuid.UUID, expires_in: int) -> Call[ShareLink]:
        body = {"expires_in": expires_in}
        return Call("POST", f"/v2/media/categories/{job_id}/share", _model(ShareLink), json=body)

    @staticmethod
    def complete(
        messages: Sequence[Mapping[str, Any]], options: Mapping[str, Any]
    ) -> Call[CompletionResponse]:
        body = {"messages": list(messages), **options}
        return Call("POST", "/v2/media/completions", _model(CompletionResponse), json=body)

    @staticmethod
    def upload(file: _UploadFile, content: Any) -> Call[UploadOut]:
        headers = {"Content-Type": file.content_type, "Content-Length": str(file.size)}
        return Call(
            "POST",
            "/v2/media/uploads",
            _model(UploadOut),
            headers=headers,
            content=content,
            params={"filename": file.path.name},  # the job's media_name
        )

    @staticmethod
    def search(
        query: str, limit: int, cursor: str | None, job_id: str | uuid.UUID | None
    ) -> Call[SearchPage]:
        params = {"q": query, "limit": limit, "cursor": cursor, "job_id": job_id}
        present = {name: str(value) for name, value in params.items() if value is not None}
        return Call("GET", "/v2/media/search", _model(SearchPage), params=present)

    @staticmethod
    def ask(job_id: str | uuid.UUID, question: str, max_tokens: int) -> Call[AskAnswer]:
        body = {"question": question, "max_tokens": max_tokens}
        return Call("POST", f"/v2/media/categories/{job_id}/ask", _model(AskAnswer), json=body)

    @staticmethod
    def events_path(job_id: str | uuid.UUID) -> str:
        return f"/v2/media/categories/{job_id}/events"


UploadProgress = Callable[[int, int], None]  # (bytes sent, bytes in all)


@dataclass(frozen=True)
class _UploadFile:
    """A local file to upload: its size, its type (from its first bytes), how to read it."""

    path: Path
    size: int
    content_type: str

    @classmethod
    def of(cls, path: str | Path) -> _UploadFile:
        path = Path(path)
        with path.open("rb") as media:
            sniffed = sniff_media(media.read(SNIFF_BYTES))  # refused here, not after the upload
        return cls(path, path.stat().st_size, sniffed.mime)

    def chunks(self, progress: UploadProgress | None) -> Iterator[bytes]:
        sent = 0
        with self.path.open("rb") as media:
            while chunk := media.read(_UPLOAD_CHUNK):
                sent += len(chunk)
                yield chunk
                if progress is not None:
                    progress(sent, self.size)


_UPLOAD_CHUNK = 1024 * 1024


class _EventParser:
    """Server-Sent Events, one line at a time: feed() returns an event at each blank line."""

    def __init__(self) -> None:
        self.event, self.data = "message", list[str]()

    def feed(self, line: str) -> JobEvent | None:
        if line.startswith("event:"):
            self.event = line[6:].strip()
        elif line.startswith("data:"):
            self.data.append(line[5:].strip())
        elif line == "":
            done = JobEvent(self.event, json.loads("\n".join(self.data))) if self.data else None
            self.event, self.data = "message", []
            return done
        return None  # comments (keep-alives) and retry hints


class _Polling:
    """When to look at a job again while waiting for it: backing off, within a deadline."""

    def __init__(self, job_id: str | uuid.UUID, timeout: float, first: float, most: float) -> None:
        self.job_id, self.timeout, self.most = job_id, timeout, most
        self.deadline = time.monotonic() + timeout
        self.interval = first

    def done(self, job: JobOut, on_progress: ProgressCallback | None) -> bool:
        if on_progress is not None:
            on_progress(job)
        return job.status.value in TERMINAL

    def next_sleep(self) -> float:
        """Seconds to sleep before the next look; WaitTimeout once the deadline would pass."""
        if time.monotonic() + self.interval > self.deadline:
            raise WaitTimeout(f"job {self.job_id} did not finish within {self.timeout:g} s")
        interval, self.interval = self.interval, min(self.most, self.interval * 1.5)
        return interval


_STREAM_TIMEOUT = httpx.Timeout(60, read=None)  # an event stream may be quiet for long


def _http_options(base_url: str, api_key: str, timeout: float) -> dict[str, Any]:
    return {
        "base_url": base_url.rstrip("/"),
        "headers": {"Authorization": f"Bearer {api_key}"},
        "timeout": timeout,
    }
