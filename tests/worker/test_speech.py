"""Speech (docs/api.md, "Transcripts"): sound decoded to 16 kHz mono in chunks, transcribed by
an OpenAI-compatible server (our fake hears one word per tone burst), stitched so no word
repeats at a border, and fused with what is seen."""

from __future__ import annotations

import asyncio
import io
import wave
from pathlib import Path
from typing import Any

import httpx
import pytest

from api.main import create_app
from scenecap.core.errors import SpeechBackendUnavailable
from scenecap.core.settings import Settings
from tests.conftest import SPOKEN, is_terminal, poll_job, serve_app
from tests.support.clips import spoken_clip
from tests.support.fake_asr import WORDS, FakeASRServer
from worker.speech.audio import decode_chunk
from worker.speech.transcribe import transcribe

WORD = {pitch: word for pitch, word in WORDS.items()}
EXPECTED = [(start, start + length, WORD[pitch]) for start, length, pitch in SPOKEN]
TOLERANCE = 0.05  # seconds: 10 ms analysis windows, AAC's own delay


def speech_settings(server: FakeASRServer, **overrides: Any) -> Settings:
    fields: dict[str, Any] = {
        "asr_backend": "openai",
        "asr_base_url": server.base_url,
        "asr_chunk_seconds": 10,
        "asr_max_retries": 1,
    }
    return Settings(**(fields | overrides))


def assert_words(segments: list[Any], expected: list[tuple[float, float, str]]) -> None:
    found = [
        (s.start, s.end, s.text) if hasattr(s, "text") else (s["start"], s["end"], s["text"])
        for s in segments
    ]
    assert [text for _s, _e, text in found] == [text for _s, _e, text in expected]
    for (start, end, _t), (want_start, want_end, _w) in zip(found, expected, strict=True):
        assert abs(start - want_start) <= TOLERANCE and abs(end - want_end) <= TOLERANCE


class TestAudio:
    def test_a_chunk_is_16_khz_mono_on_the_videos_timeline(self, media_dir: Path) -> None:
        chunk = decode_chunk(media_dir / "spoken.mp4", 8.0, 12.0)
        assert chunk.start == 8.0 and abs(chunk.seconds - 4.0) < 1e-3
        with wave.open(io.BytesIO(chunk.wav)) as sound:
            assert (sound.getnchannels(), sound.getframerate(), sound.getsampwidth()) == (
                1,
                16000,
                2,
            )
            assert sound.getnframes() == 4 * 16000

    def test_media_without_sound_gives_an_empty_chunk(self, media_dir: Path) -> None:
        assert decode_chunk(media_dir / "sample.mp4", 0.0, 10.0).seconds == 0.0


class TestTranscribe:
    def test_words_across_chunk_borders_appear_once_at_their_times(
        self, media_dir: Path, fake_asr_server: FakeASRServer, fake_asr: Any
    ) -> None:
        settings = speech_settings(fake_asr_server)
        transcript = asyncio.run(transcribe(media_dir / "spoken.mp4", 30.0, settings))
        assert_words(transcript.segments, EXPECTED)
        assert transcript.language == "english"
        assert abs(transcript.audio_seconds - 30.0) < 0.05
        # Three 10-second chunks, each hearing 2 s of its neighbours: the words at the
        # borders were heard twice and kept once.
        assert sorted(round(r.seconds) for r in fake_asr.requests) == [12, 12, 14]
        assert sum(len(r.words) for r in fake_asr.requests) == len(EXPECTED) + 2

    def test_a_server_without_segments_gives_chunk_level_times(
        self, media_dir: Path, fake_asr_server: FakeASRServer, fake_asr: Any
    ) -> None:
        fake_asr.without_segments = True
        settings = speech_settings(fake_asr_server)
        transcript = asyncio.run(transcribe(media_dir / "spoken.mp4", 30.0, settings))
        assert [(s.start, s.end) for s in transcript.segments] == [
            (0.0, 10.0),
            (10.0, 20.0),
            (20.0, pytest.approx(30.0, abs=0.05)),
        ]
        assert transcript.segments[0].text == "alpha bravo"

    def test_chunks_go_out_concurrently_within_the_limit(
        self, tmp_path: Path, fake_asr_server: FakeASRServer, fake_asr: Any
    ) -> None:
        path = spoken_clip(tmp_path / "long.mp4", 60.0, [(5.0, 0.5, 440)])
        fake_asr.delay = 0.3
        settings = speech_settings(fake_asr_server, asr_max_concurrency=3)
        asyncio.run(transcribe(path, 60.0, settings))
        assert len(fake_asr.requests) == 6 and fake_asr.max_in_flight == 3

    def test_a_failing_server_is_retried_then_reported(
        self, media_dir: Path, fake_asr_server: FakeASRServer, fake_asr: Any
    ) -> None:
        fake_asr.fail_next = 1  # one 500: the retry succeeds
        settings = speech_settings(fake_asr_server, asr_max_concurrency=1)
        transcript = asyncio.run(transcribe(media_dir / "spoken.mp4", 30.0, settings))
        assert len(transcript.segments) == len(EXPECTED)
        fake_asr.fail_next, fake_asr.fail_status = 100, 503
        with pytest.raises(SpeechBackendUnavailable, match="after 2 attempts"):
            asyncio.run(transcribe(media_dir / "spoken.mp4", 30.0, settings))
        fake_asr.fail_next, fake_asr.fail_status = 100, 401
        with pytest.raises(SpeechBackendUnavailable, match="HTTP 401"):
            asyncio.run(transcribe(media_dir / "spoken.mp4", 30.0, settings))


def _user_text(request: Any) -> str:
    content = request.body["messages"][-1]["content"]
    if isinstance(content, str):
        return content
    return "\n".join(p["text"] for p in content if p["type"] == "text")


@pytest.mark.usefixtures("worker")
class TestJobs:
    def test_a_frame_job_carries_the_transcript_and_hears_it_beside_each_frame(
        self, client: httpx.Client, media_server: str, fake_vlm: Any, fake_asr: Any
    ) -> None:
        body = {
            "media_url": f"{media_server}/spoken.mp4",
            "metadata": ["tags", "transcript"],
            "max_frames": 6,
        }
        response = client.post("/v2/media/categories", json=body)
        assert response.status_code == 202, response.text
        job = poll_job(client, response.json()["job_id"], until=is_terminal)
        assert job["status"] == "COMPLETED", job["error"]
        transcript = job["results"]["transcript"]
        assert_words(transcript["segments"], EXPECTED)
        assert transcript["text"] == "alpha bravo charlie delta"
        assert transcript["language"] == "english"
        assert abs(job["usage"]["audio_seconds"] - 30.0) < 0.05
        assert "transcribing" in job["timings"]
        assert (
            job["metadata"] == ["tags", "transcript"]
            and "transcript" not in job["results"]["frames"][0]
        )
        # Frames at 2.5 s and 22.5 s sit inside "alpha" and "delta": heard, not seen.
        frames = {f.body["messages"][1]["content"][1]["text"]: f for f in fake_vlm.image_requests()}
        heard = [text for text in frames if "speech, not seen" in text]
        assert len(heard) == 2
        assert any('"alpha"' in text for text in heard) and any('"delta"' in text for text in heard)
        [summary] = [r for r in fake_vlm.requests if r.colour is None]
        assert "What is said in the video (speech):\n[2.2 s] alpha" in _user_text(summary)
        # The report shows when speech is heard, and the transcript.
        page = client.get(f"/v2/media/categories/{job['job_id']}/report").text
        assert page.count("<span title=") == len(EXPECTED)
        assert "<h2>Transcript (english)</h2>" in page and "delta</p>" in page

    def test_a_segment_job_hears_each_segments_speech_and_summarises_with_it(
        self, client: httpx.Client, media_server: str, fake_vlm: Any, fake_asr: Any
    ) -> None:
        body = {
            "media_url": f"{media_server}/spoken.mp4",
            "metadata": ["scene", "transcript"],
            "segment_seconds": 5,
            "frames_per_segment": 2,
        }
        response = client.post("/v2/media/categories", json=body)
        job = poll_job(client, response.json()["job_id"], until=is_terminal)
        assert job["status"] == "COMPLETED", job["error"]
        assert_words(job["results"]["transcript"]["segments"], EXPECTED)
        said = {}
        for request in fake_vlm.image_requests():
            text = _user_text(request)
            start = float(text.split("from ")[1].split(" s")[0])
            said[start] = (
                text.split('(speech, not seen): "')[1].split('"')[0] if "not seen" in text else ""
            )
        # "charlie" (19.7-20.3 s) is heard by both segments it overlaps.
        assert said == {
            0.0: "alpha",
            5.0: "bravo",
            10.0: "bravo",
            15.0: "charlie",
            20.0: "charlie delta",
            25.0: "",
        }
        chapter_requests = [r for r in fake_vlm.requests if "Group them" in _user_text(r)]
        assert chapter_requests and '(said: "alpha")' in _user_text(chapter_requests[0])

    def test_media_without_sound_has_an_empty_transcript(
        self, client: httpx.Client, media_server: str, fake_vlm: Any, fake_asr: Any
    ) -> None:
        body = {
            "media_url": f"{media_server}/sample.mp4",
            "metadata": ["transcript"],
            "max_frames": 2,
        }
        response = client.post("/v2/media/categories", json=body)
        job = poll_job(client, response.json()["job_id"], until=is_terminal)
        assert job["status"] == "COMPLETED", job["error"]
        assert job["results"]["transcript"] == {"language": "", "text": "", "segments": []}
        assert fake_asr.requests == []

    def test_a_failing_speech_server_fails_the_job_with_its_code(
        self, client: httpx.Client, media_server: str, fake_vlm: Any, fake_asr: Any
    ) -> None:
        fake_asr.fail_next, fake_asr.fail_status = 1000, 500
        body = {
            "media_url": f"{media_server}/spoken.mp4",
            "metadata": ["transcript"],
            "max_frames": 2,
        }
        response = client.post("/v2/media/categories", json=body)
        job = poll_job(client, response.json()["job_id"], until=is_terminal)
        assert job["status"] == "FAILED"
        assert job["error"]["code"] == "SPEECH_BACKEND_UNAVAILABLE"


def test_asking_for_a_transcript_without_a_speech_backend_is_refused(
    settings: Settings, database: str, new_key: Any, media_server: str
) -> None:
    app = create_app(settings.model_copy(update={"asr_backend": "none"}))
    with serve_app(app) as url:
        response = httpx.post(
            f"{url}/v2/media/categories",
            headers={"Authorization": f"Bearer {new_key()}"},
            json={"media_url": f"{media_server}/spoken.mp4", "metadata": ["tags", "transcript"]},
        )
    assert response.status_code == 422
    assert response.json()["error"]["code"] == "TRANSCRIPTION_UNAVAILABLE"
