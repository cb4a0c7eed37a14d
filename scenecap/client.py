"""Python client for a scenecap service (sync and async, httpx), plus webhook verification.

    from scenecap.client import ScenecapClient
    with ScenecapClient("http://127.0.0.1:8000", api_key) as client:
        job = client.wait(client.create("https://example.com/clip.mp4").job_id)
        print(job.results["description"])

Results are the service's own response models; an error response is raised as the scenecap
error its code names (e.g. `JobNotFound`, `RateLimited`), with `.details` and `.status`.
"""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import httpx

from api.schemas import (
    CompletionResponse,
    ImageResult,
    JobAccepted,
    JobList,
    JobOut,
    ShareLink,
)
from scenecap.core.errors import ScenecapError, error_for_code
from scenecap.core.signing import WebhookVerificationError, verify_webhook

__all__ = [
    "AsyncScenecapClient",
    "JobEvent",
    "ScenecapClient",
    "WaitTimeout",
    "WebhookVerificationError",
    "verify_webhook",
]
TERMINAL = ("COMPLETED", "FAILED", "CANCELLED")
ProgressCallback = Callable[[JobOut], None]


class WaitTimeout(ScenecapError):
    status_code, code = 408, "WAIT_TIMEOUT"


@dataclass(frozen=True)
class JobEvent:
    """One Server-Sent Event: `progress`, or the terminal `completed|failed|cancelled`."""

    event: str
    data: dict[str, Any]

    @property
    def terminal(self) -> bool:
        return self.event in ("completed", "failed", "cancelled")


def _raise_for_error(response: httpx.Response) -> None:
    if response.is_success:
        return
    try:
        body = response.json()["error"]
        code, message, details = body["code"], body["message"], body.get("details") or {}
    except (ValueError, KeyError, TypeError):
        code, message, details = "HTTP_ERROR", response.text[:500], {}
    error = error_for_code(code, message)
    error.details = {**details, "code": code}
    error.status = response.status_code  # type: ignore[attr-defined]
    raise error


def _submission(
    media_url: str,
    *,
    metadata: list[str] | None,
    use_scenes: bool,
    webhook_url: str | None,
    job_tag: str | None,
    max_frames: int | None,
    model: str | None,
) -> dict[str, Any]:
    body: dict[str, Any] = {"media_url": media_url, "use_scenes": use_scenes}
    optional = {
        "metadata": metadata,
        "webhook_url": webhook_url,
        "job_tag": job_tag,
        "max_frames": max_frames,
        "model": model,
    }
    body.update({name: value for name, value in optional.items() if value is not None})
    return body


def _created(response: httpx.Response) -> JobAccepted | ImageResult:
    _raise_for_error(response)
    data = response.json()
    return (
        JobAccepted.model_validate(data) if "job_id" in data else ImageResult.model_validate(data)
    )


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


def _next_interval(interval: float, maximum: float) -> float:
    return min(maximum, interval * 1.5)


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
        self._http = httpx.Client(
            base_url=base_url.rstrip("/"),
            headers={"Authorization": f"Bearer {api_key}"},
            timeout=timeout,
            transport=transport,
        )

    def __enter__(self) -> ScenecapClient:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._http.close()

    def create(
        self,
        media_url: str,
        *,
        metadata: list[str] | None = None,
        use_scenes: bool = False,
        webhook_url: str | None = None,
        job_tag: str | None = None,
        max_frames: int | None = None,
        model: str | None = None,
        idempotency_key: str | None = None,
    ) -> JobAccepted | ImageResult:
        """Submit media. A video gives JobAccepted (wait on its job_id); an image, its result."""
        body = _submission(
            media_url,
            metadata=metadata,
            use_scenes=use_scenes,
            webhook_url=webhook_url,
            job_tag=job_tag,
            max_frames=max_frames,
            model=model,
        )
        headers = {"Idempotency-Key": idempotency_key} if idempotency_key else {}
        return _created(self._http.post("/v2/media/categories", json=body, headers=headers))

    def get(self, job_id: str | uuid.UUID) -> JobOut:
        response = self._http.get(f"/v2/media/categories/{job_id}")
        _raise_for_error(response)
        return JobOut.model_validate(response.json())

    def list(
        self, *, limit: int = 20, status: str | None = None, cursor: str | None = None
    ) -> JobList:
        params: dict[str, Any] = {"limit": limit}
        params.update({k: v for k, v in (("status", status), ("cursor", cursor)) if v})
        response = self._http.get("/v2/media/categories", params=params)
        _raise_for_error(response)
        return JobList.model_validate(response.json())

    def cancel(self, job_id: str | uuid.UUID) -> JobOut:
        response = self._http.delete(f"/v2/media/categories/{job_id}")
        _raise_for_error(response)
        return JobOut.model_validate(response.json())

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
        deadline = time.monotonic() + timeout
        interval = poll_interval
        while True:
            job = self.get(job_id)
            if on_progress is not None:
                on_progress(job)
            if job.status.value in TERMINAL:
                return job
            if time.monotonic() + interval > deadline:
                raise WaitTimeout(f"job {job_id} did not finish within {timeout:g} s")
            time.sleep(interval)  # polling back-off, bounded by the deadline
            interval = _next_interval(interval, max_interval)

    def events(self, job_id: str | uuid.UUID) -> Iterator[JobEvent]:
        """Follow the job's Server-Sent Events until its terminal event."""
        with self._http.stream(
            "GET", f"/v2/media/categories/{job_id}/events", timeout=httpx.Timeout(60, read=None)
        ) as response:
            if not response.is_success:
                response.read()
                _raise_for_error(response)
            parser = _EventParser()
            for line in response.iter_lines():
                event = parser.feed(line)
                if event is not None:
                    yield event
                    if event.terminal:
                        return

    def share(self, job_id: str | uuid.UUID, *, expires_in: int = 7 * 24 * 3600) -> ShareLink:
        response = self._http.post(
            f"/v2/media/categories/{job_id}/share", json={"expires_in": expires_in}
        )
        _raise_for_error(response)
        return ShareLink.model_validate(response.json())

    def complete(self, messages: Sequence[Mapping[str, Any]], **options: Any) -> CompletionResponse:
        """POST /v2/media/completions (OpenAI chat-completions shape; options: model,
        temperature, max_tokens)."""
        response = self._http.post(
            "/v2/media/completions", json={"messages": list(messages), **options}
        )
        _raise_for_error(response)
        return CompletionResponse.model_validate(response.json())


class AsyncScenecapClient:
    """The asyncio twin of ScenecapClient."""

    def __init__(
        self,
        base_url: str,
        api_key: str,
        *,
        timeout: float = 60.0,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self._http = httpx.AsyncClient(
            base_url=base_url.rstrip("/"),
            headers={"Authorization": f"Bearer {api_key}"},
            timeout=timeout,
            transport=transport,
        )

    async def __aenter__(self) -> AsyncScenecapClient:
        return self

    async def __aexit__(self, *_exc: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        await self._http.aclose()

    async def create(
        self,
        media_url: str,
        *,
        metadata: list[str] | None = None,
        use_scenes: bool = False,
        webhook_url: str | None = None,
        job_tag: str | None = None,
        max_frames: int | None = None,
        model: str | None = None,
        idempotency_key: str | None = None,
    ) -> JobAccepted | ImageResult:
        body = _submission(
            media_url,
            metadata=metadata,
            use_scenes=use_scenes,
            webhook_url=webhook_url,
            job_tag=job_tag,
            max_frames=max_frames,
            model=model,
        )
        headers = {"Idempotency-Key": idempotency_key} if idempotency_key else {}
        return _created(await self._http.post("/v2/media/categories", json=body, headers=headers))

    async def get(self, job_id: str | uuid.UUID) -> JobOut:
        response = await self._http.get(f"/v2/media/categories/{job_id}")
        _raise_for_error(response)
        return JobOut.model_validate(response.json())

    async def list(
        self, *, limit: int = 20, status: str | None = None, cursor: str | None = None
    ) -> JobList:
        params: dict[str, Any] = {"limit": limit}
        params.update({k: v for k, v in (("status", status), ("cursor", cursor)) if v})
        response = await self._http.get("/v2/media/categories", params=params)
        _raise_for_error(response)
        return JobList.model_validate(response.json())

    async def cancel(self, job_id: str | uuid.UUID) -> JobOut:
        response = await self._http.delete(f"/v2/media/categories/{job_id}")
        _raise_for_error(response)
        return JobOut.model_validate(response.json())

    async def wait(
        self,
        job_id: str | uuid.UUID,
        *,
        timeout: float = 600.0,
        poll_interval: float = 0.25,
        max_interval: float = 5.0,
        on_progress: ProgressCallback | None = None,
    ) -> JobOut:
        deadline = time.monotonic() + timeout
        interval = poll_interval
        while True:
            job = await self.get(job_id)
            if on_progress is not None:
                on_progress(job)
            if job.status.value in TERMINAL:
                return job
            if time.monotonic() + interval > deadline:
                raise WaitTimeout(f"job {job_id} did not finish within {timeout:g} s")
            await asyncio.sleep(interval)  # polling back-off, bounded by the deadline
            interval = _next_interval(interval, max_interval)

    async def events(self, job_id: str | uuid.UUID) -> AsyncIterator[JobEvent]:
        async with self._http.stream(
            "GET", f"/v2/media/categories/{job_id}/events", timeout=httpx.Timeout(60, read=None)
        ) as response:
            if not response.is_success:
                await response.aread()
                _raise_for_error(response)
            parser = _EventParser()
            async for line in response.aiter_lines():
                event = parser.feed(line)
                if event is not None:
                    yield event
                    if event.terminal:
                        return

    async def complete(
        self, messages: Sequence[Mapping[str, Any]], **options: Any
    ) -> CompletionResponse:
        response = await self._http.post(
            "/v2/media/completions", json={"messages": list(messages), **options}
        )
        _raise_for_error(response)
        return CompletionResponse.model_validate(response.json())
