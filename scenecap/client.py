"""Python client for a scenecap service (sync and async, httpx), plus webhook verification.

    from scenecap.client import ScenecapClient
    with ScenecapClient("http://127.0.0.1:8000", api_key) as client:
        job = client.wait(client.create("https://example.com/clip.mp4").job_id)
        print(job.results["description"])

Results are the service's own response models; an error response is raised as the scenecap
error its code names (e.g. `JobNotFound`, `RateLimited`), with `.details` and `.status`.

Both clients share one core, as httpx's do: `_Calls` builds each request and knows how to
read its answer; `ScenecapClient` and `AsyncScenecapClient` only send.
"""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Generic, TypedDict, TypeVar, Unpack

import httpx
from pydantic import BaseModel

from api.schemas import (
    CompletionResponse,
    ImageResult,
    JobAccepted,
    JobList,
    JobOut,
    ShareLink,
    UploadOut,
)
from scenecap.core.errors import WaitTimeout, error_for_code
from scenecap.core.media import SNIFF_BYTES, sniff_media
from scenecap.core.signing import WebhookVerificationError, verify_webhook

__all__ = [
    "AsyncScenecapClient",
    "JobEvent",
    "JobOptions",
    "ScenecapClient",
    "UploadProgress",
    "WaitTimeout",
    "WebhookVerificationError",
    "verify_webhook",
]
T = TypeVar("T")
M = TypeVar("M", bound=BaseModel)
TERMINAL = ("COMPLETED", "FAILED", "CANCELLED")
ProgressCallback = Callable[[JobOut], None]


class JobOptions(TypedDict, total=False):
    """The optional fields of a job request (see the API's POST /v2/media/categories)."""

    metadata: list[str]
    use_scenes: bool
    webhook_url: str
    job_tag: str
    max_frames: int
    model: str
    segment_seconds: float  # segment mode: caption every stretch of this many seconds
    frames_per_segment: int


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
    def get(job_id: str | uuid.UUID) -> Call[JobOut]:
        return Call("GET", f"/v2/media/categories/{job_id}", _model(JobOut))

    @staticmethod
    def list(limit: int, status: str | None, cursor: str | None) -> Call[JobList]:
        params = {"limit": limit, "status": status, "cursor": cursor}
        present = {name: value for name, value in params.items() if value is not None}
        return Call("GET", "/v2/media/categories", _model(JobList), params=present)

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
            "POST", "/v2/media/uploads", _model(UploadOut), headers=headers, content=content
        )

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


class ScenecapClient:
    """A blocking client; one connection pool per instance (use it as a context manager)."""

    def __init__(
        self,
        base_url: str,
        api_key: str,
        *,
        timeout: float = 60.0,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        self._http = httpx.Client(**_http_options(base_url, api_key, timeout), transport=transport)

    def __enter__(self) -> ScenecapClient:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._http.close()

    def _send(self, call: Call[T]) -> T:
        return call.parse(
            self._http.request(
                call.method,
                call.path,
                json=call.json,
                params=call.params,
                headers=call.headers,
                content=call.content,
            )
        )

    def create(
        self, media_url: str, *, idempotency_key: str | None = None, **options: Unpack[JobOptions]
    ) -> JobAccepted | ImageResult:
        """Submit media. A video gives JobAccepted (wait on its job_id); an image, its result."""
        return self._send(_Calls.create(media_url, idempotency_key, options))

    def get(self, job_id: str | uuid.UUID) -> JobOut:
        return self._send(_Calls.get(job_id))

    def list(
        self, *, limit: int = 20, status: str | None = None, cursor: str | None = None
    ) -> JobList:
        return self._send(_Calls.list(limit, status, cursor))

    def cancel(self, job_id: str | uuid.UUID) -> JobOut:
        return self._send(_Calls.cancel(job_id))

    def share(self, job_id: str | uuid.UUID, *, expires_in: int = 7 * 24 * 3600) -> ShareLink:
        return self._send(_Calls.share(job_id, expires_in))

    def complete(self, messages: Sequence[Mapping[str, Any]], **options: Any) -> CompletionResponse:
        """POST /v2/media/completions (OpenAI chat-completions shape; options: model,
        temperature, max_tokens)."""
        return self._send(_Calls.complete(messages, options))

    def upload(self, path: str | Path, *, progress: UploadProgress | None = None) -> UploadOut:
        """Send a local video or image; submit its `media_url` (upload://<id>) as a job's.
        `progress(sent, total)` is told of each megabyte sent."""
        file = _UploadFile.of(path)
        return self._send(_Calls.upload(file, file.chunks(progress)))

    def wait(
        self,
        job_id: str | uuid.UUID,
        *,
        timeout: float = 600.0,
        poll_interval: float = 0.25,
        max_interval: float = 5.0,
        on_progress: ProgressCallback | None = None,
    ) -> JobOut:
        """Poll (backing off to max_interval) until the job ends; return it, whatever its end."""
        polling = _Polling(job_id, timeout, poll_interval, max_interval)
        while not polling.done(job := self.get(job_id), on_progress):
            time.sleep(polling.next_sleep())
        return job

    def events(self, job_id: str | uuid.UUID) -> Iterator[JobEvent]:
        """Follow the job's Server-Sent Events until its terminal event."""
        path = _Calls.events_path(job_id)
        with self._http.stream("GET", path, timeout=_STREAM_TIMEOUT) as response:
            if not response.is_success:
                response.read()
                raise_for_error(response)
            parser = _EventParser()
            for line in response.iter_lines():
                event = parser.feed(line)
                if event is not None:
                    yield event
                    if event.terminal:
                        return


class AsyncScenecapClient:
    """The asyncio twin of ScenecapClient: the same methods, as coroutines."""

    def __init__(
        self,
        base_url: str,
        api_key: str,
        *,
        timeout: float = 60.0,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self._http = httpx.AsyncClient(
            **_http_options(base_url, api_key, timeout), transport=transport
        )

    async def __aenter__(self) -> AsyncScenecapClient:
        return self

    async def __aexit__(self, *_exc: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        await self._http.aclose()

    async def _send(self, call: Call[T]) -> T:
        return call.parse(
            await self._http.request(
                call.method,
                call.path,
                json=call.json,
                params=call.params,
                headers=call.headers,
                content=call.content,
            )
        )

    async def create(
        self, media_url: str, *, idempotency_key: str | None = None, **options: Unpack[JobOptions]
    ) -> JobAccepted | ImageResult:
        return await self._send(_Calls.create(media_url, idempotency_key, options))

    async def get(self, job_id: str | uuid.UUID) -> JobOut:
        return await self._send(_Calls.get(job_id))

    async def list(
        self, *, limit: int = 20, status: str | None = None, cursor: str | None = None
    ) -> JobList:
        return await self._send(_Calls.list(limit, status, cursor))

    async def cancel(self, job_id: str | uuid.UUID) -> JobOut:
        return await self._send(_Calls.cancel(job_id))

    async def share(self, job_id: str | uuid.UUID, *, expires_in: int = 7 * 24 * 3600) -> ShareLink:
        return await self._send(_Calls.share(job_id, expires_in))

    async def complete(
        self, messages: Sequence[Mapping[str, Any]], **options: Any
    ) -> CompletionResponse:
        return await self._send(_Calls.complete(messages, options))

    async def upload(
        self, path: str | Path, *, progress: UploadProgress | None = None
    ) -> UploadOut:
        file = _UploadFile.of(path)

        async def chunks() -> AsyncIterator[bytes]:
            for chunk in file.chunks(progress):  # local reads of a megabyte: brief
                yield chunk

        return await self._send(_Calls.upload(file, chunks()))

    async def wait(
        self,
        job_id: str | uuid.UUID,
        *,
        timeout: float = 600.0,
        poll_interval: float = 0.25,
        max_interval: float = 5.0,
        on_progress: ProgressCallback | None = None,
    ) -> JobOut:
        polling = _Polling(job_id, timeout, poll_interval, max_interval)
        while not polling.done(job := await self.get(job_id), on_progress):
            await asyncio.sleep(polling.next_sleep())
        return job

    async def events(self, job_id: str | uuid.UUID) -> AsyncIterator[JobEvent]:
        path = _Calls.events_path(job_id)
        async with self._http.stream("GET", path, timeout=_STREAM_TIMEOUT) as response:
            if not response.is_success:
                await response.aread()
                raise_for_error(response)
            parser = _EventParser()
            async for line in response.aiter_lines():
                event = parser.feed(line)
                if event is not None:
                    yield event
                    if event.terminal:
                        return
