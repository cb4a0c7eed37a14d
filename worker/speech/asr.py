"""The `openai` speech backend: any server with OpenAI's POST /v1/audio/transcriptions
(whisper.cpp's server, speaches/faster-whisper-server, vLLM serving Whisper, OpenAI).

One multipart request per chunk asking for `verbose_json` with segment timestamps; 429, 5xx
and timeouts are retried with backoff (honouring Retry-After), anything else fails the job.
"""

from __future__ import annotations

from typing import Any

import httpx

from scenecap.core.backoff import model_client, send_retrying
from scenecap.core.errors import SpeechBackendUnavailable
from scenecap.core.settings import Settings
from worker.speech.transcript import ChunkAnswer


class SpeechClient:
    """Transcription requests over one pooled async httpx client (use one per event loop)."""

    def __init__(
        self, settings: Settings, transport: httpx.AsyncBaseTransport | None = None
    ) -> None:
        self.settings = settings
        self._client = model_client(
            settings.asr_base_url,
            settings.asr_api_key.get_secret_value(),
            timeout=settings.asr_timeout_seconds,
            max_connections=settings.asr_max_concurrency,
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
        response, _retries = await send_retrying(
            lambda: self._client.post(
                "audio/transcriptions", data=form, files={"file": ("audio.wav", wav, "audio/wav")}
            ),
            attempts,
            unavailable=SpeechBackendUnavailable,
            server="speech server",
        )
        return _json(response)


def _json(response: httpx.Response) -> dict[str, Any]:
    try:
        answer = response.json()
    except ValueError:  # response_format=text servers: the body is the text
        return {"text": response.text}
    if not isinstance(answer, dict):
        raise SpeechBackendUnavailable("speech server answered something that is not JSON")
    return answer
