"""The `openai` speech backend: any server with OpenAI's POST /v1/audio/transcriptions
(whisper.cpp's server, speaches/faster-whisper-server, vLLM serving Whisper, OpenAI).

One multipart request per chunk asking for `verbose_json` with segment timestamps; 429, 5xx
and timeouts are retried with backoff (honouring Retry-After), anything else fails the job.
"""

from __future__ import annotations

import asyncio
from typing import Any

import httpx

from scenecap.core.errors import SpeechBackendUnavailable
from scenecap.core.settings import Settings
from worker.backoff import RETRY_STATUS, delay_before
from worker.speech.transcript import ChunkAnswer


class SpeechClient:
    """Transcription requests over one pooled async httpx client (use one per event loop)."""

    def __init__(
        self, settings: Settings, transport: httpx.AsyncBaseTransport | None = None
    ) -> None:
        self.settings = settings
        headers = (
            {"Authorization": f"Bearer {settings.asr_api_key}"} if settings.asr_api_key else {}
        )
        self._client = httpx.AsyncClient(
            base_url=settings.asr_base_url.rstrip("/") + "/",
            headers=headers,
            timeout=httpx.Timeout(settings.asr_timeout_seconds, connect=10.0),
            limits=httpx.Limits(max_connections=settings.asr_max_concurrency),
            trust_env=False,
            transport=transport,
        )

    async def transcribe(self, wav: bytes, seconds: float) -> ChunkAnswer:
        answer = await self._post(wav)
        segments = answer.get("segments")
        parsed = None
        if isinstance(segments, list) and segments:
            parsed = [
                (float(s.get("start") or 0.0), float(s.get("end") or 0.0), str(s.get("text") or ""))
                for s in segments
                if isinstance(s, dict)
            ]
        return ChunkAnswer(
            str(answer.get("language") or ""), str(answer.get("text") or ""), parsed, seconds
        )

    async def aclose(self) -> None:
        await self._client.aclose()

    async def _post(self, wav: bytes) -> dict[str, Any]:
        attempts = self.settings.asr_max_retries + 1
        form = {
            "model": self.settings.asr_model,
            "response_format": "verbose_json",
            "timestamp_granularities[]": "segment",
        }
        problem = ""
        for attempt in range(attempts):
            failed: httpx.Response | None = None
            try:
                response = await self._client.post(
                    "audio/transcriptions",
                    data=form,
                    files={"file": ("audio.wav", wav, "audio/wav")},
                )
            except httpx.TransportError as exc:
                problem = type(exc).__name__
            else:
                if response.is_success:
                    return _json(response)
                if response.status_code not in RETRY_STATUS:
                    raise SpeechBackendUnavailable(
                        f"speech server answered HTTP {response.status_code}: "
                        f"{response.text[:200]}",
                        {"status_code": response.status_code},
                    )
                problem, failed = f"HTTP {response.status_code}", response
            if attempt + 1 < attempts:
                await asyncio.sleep(delay_before(attempt, failed))
        raise SpeechBackendUnavailable(
            f"speech server unavailable after {attempts} attempts (last: {problem})",
            {"attempts": attempts},
        )


def _json(response: httpx.Response) -> dict[str, Any]:
    try:
        answer = response.json()
    except ValueError:  # response_format=text servers: the body is the text
        return {"text": response.text}
    if not isinstance(answer, dict):
        raise SpeechBackendUnavailable("speech server answered something that is not JSON")
    return answer
