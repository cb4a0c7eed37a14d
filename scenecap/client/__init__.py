"""Python client for a scenecap service (sync and async, httpx), plus webhook verification.

    from scenecap.client import ScenecapClient
    with ScenecapClient("http://127.0.0.1:8000", api_key) as client:
        job = client.wait(client.create("https://example.com/clip.mp4").job_id)
        print(job.results["description"])

Results are the service's own response models; an error response is raised as the scenecap
error its code names (e.g. `JobNotFound`, `RateLimited`), with `.details` and `.status`.

Both clients share one core, as httpx's do: `_Calls` (scenecap/client/calls.py) builds
each request and knows how to read its answer; `ScenecapClient` and `AsyncScenecapClient`
only send.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any, TypeVar, Unpack

import httpx

from scenecap.client.calls import (
    _STREAM_TIMEOUT,
    Call,
    JobEvent,
    JobOptions,
    ProgressCallback,
    UploadProgress,
    _Calls,
    _EventParser,
    _http_options,
    _Polling,
    _UploadFile,
    raise_for_error,
)
from scenecap.core.errors import WaitTimeout
from scenecap.core.signing import WebhookVerificationError, verify_webhook
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

    def create_batch(
        self, requests: Sequence[Mapping[str, Any]], *, idempotency_key: str | None = None
    ) -> BatchResponse:
        """Submit up to 100 request bodies at once ({"media_url": ..., options}); each
        result has its job_id or its own error."""
        return self._send(_Calls.create_batch(requests, idempotency_key))

    def usage(self, *, first: str | None = None, last: str | None = None) -> UsageReport:
        """What your jobs used per UTC day, from `first` to `last` (YYYY-MM-DD; by default
        the last 30 days)."""
        return self._send(_Calls.usage(first, last))

    def get(self, job_id: str | uuid.UUID) -> JobOut:
        return self._send(_Calls.get(job_id))

    def list(
        self,
        *,
        limit: int = 20,
        status: str | None = None,
        cursor: str | None = None,
        job_tag: str | None = None,
    ) -> JobList:
        return self._send(_Calls.list(limit, status, cursor, job_tag))

    def export(
        self, job_id: str | uuid.UUID, format: str = "json", kinds: Sequence[str] = ()
    ) -> str:
        """A completed job's cues as json, csv, srt or vtt text (kinds: caption, chapter,
        speech, text; all by default)."""
        return self._send(_Calls.export(job_id, format, kinds))

    def cancel(self, job_id: str | uuid.UUID) -> JobOut:
        return self._send(_Calls.cancel(job_id))

    def share(self, job_id: str | uuid.UUID, *, expires_in: int = 7 * 24 * 3600) -> ShareLink:
        return self._send(_Calls.share(job_id, expires_in))

    def complete(self, messages: Sequence[Mapping[str, Any]], **options: Any) -> CompletionResponse:
        """POST /v2/media/completions (OpenAI chat-completions shape; options: model,
        temperature, max_tokens)."""
        return self._send(_Calls.complete(messages, options))

    def search(
        self,
        query: str,
        *,
        limit: int = 20,
        cursor: str | None = None,
        job_id: str | uuid.UUID | None = None,
    ) -> SearchPage:
        """Where your completed jobs show, say or label something: hits, best first;
        `query` takes "quoted phrases", `or` and -word."""
        return self._send(_Calls.search(query, limit, cursor, job_id))

    def ask(self, job_id: str | uuid.UUID, question: str, *, max_tokens: int = 300) -> AskAnswer:
        """A question about one completed job, answered from its passages with their times."""
        return self._send(_Calls.ask(job_id, question, max_tokens))

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

    async def create_batch(
        self, requests: Sequence[Mapping[str, Any]], *, idempotency_key: str | None = None
    ) -> BatchResponse:
        return await self._send(_Calls.create_batch(requests, idempotency_key))

    async def usage(self, *, first: str | None = None, last: str | None = None) -> UsageReport:
        return await self._send(_Calls.usage(first, last))

    async def get(self, job_id: str | uuid.UUID) -> JobOut:
        return await self._send(_Calls.get(job_id))

    async def list(
        self,
        *,
        limit: int = 20,
        status: str | None = None,
        cursor: str | None = None,
        job_tag: str | None = None,
    ) -> JobList:
        return await self._send(_Calls.list(limit, status, cursor, job_tag))

    async def export(
        self, job_id: str | uuid.UUID, format: str = "json", kinds: Sequence[str] = ()
    ) -> str:
        return await self._send(_Calls.export(job_id, format, kinds))

    async def cancel(self, job_id: str | uuid.UUID) -> JobOut:
        return await self._send(_Calls.cancel(job_id))

    async def share(self, job_id: str | uuid.UUID, *, expires_in: int = 7 * 24 * 3600) -> ShareLink:
        return await self._send(_Calls.share(job_id, expires_in))

    async def complete(
        self, messages: Sequence[Mapping[str, Any]], **options: Any
    ) -> CompletionResponse:
        return await self._send(_Calls.complete(messages, options))

    async def search(
        self,
        query: str,
        *,
        limit: int = 20,
        cursor: str | None = None,
        job_id: str | uuid.UUID | None = None,
    ) -> SearchPage:
        return await self._send(_Calls.search(query, limit, cursor, job_id))

    async def ask(
        self, job_id: str | uuid.UUID, question: str, *, max_tokens: int = 300
    ) -> AskAnswer:
        return await self._send(_Calls.ask(job_id, question, max_tokens))

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
