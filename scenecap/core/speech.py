"""Whether a job may ask for `transcript` on this service's speech backend, checked where a
job is submitted (the API, `scenecap analyze`) without loading anything."""

from __future__ import annotations

from pathlib import Path

from scenecap.core.errors import SpeechBackendUnavailable, TranscriptionUnavailable
from scenecap.core.settings import Settings

# What faster-whisper reads from a CTranslate2 Whisper model's folder.
MODEL_FILES = ("model.bin", "config.json")
TOKENIZER_FILES = ("tokenizer.json", "vocabulary.json", "vocabulary.txt")


def check_speech(settings: Settings) -> None:
    """Raise unless a transcript can be made: 422 with no backend, 503 when the local
    backend's model folder is missing or incomplete (the message names the setting)."""
    if settings.asr_backend == "none":
        raise TranscriptionUnavailable(
            "this service has no speech backend (SCENECAP_ASR_BACKEND=none): "
            "ask without 'transcript'"
        )
    if settings.asr_backend == "local" and (problem := local_model_problem(settings)):
        raise SpeechBackendUnavailable(problem)


def local_model_problem(settings: Settings) -> str | None:
    """Why SCENECAP_ASR_MODEL_PATH cannot hold a CTranslate2 Whisper model, or None. Says
    nothing of the folder's location: clients see this message."""
    if not settings.asr_model_path:
        return (
            "SCENECAP_ASR_BACKEND=local needs SCENECAP_ASR_MODEL_PATH (a CTranslate2 Whisper model)"
        )
    folder = Path(settings.asr_model_path).expanduser()
    if not folder.is_dir():
        return "SCENECAP_ASR_MODEL_PATH is not a folder on this machine"
    missing = [name for name in MODEL_FILES if not (folder / name).is_file()]
    if not any((folder / name).is_file() for name in TOKENIZER_FILES):
        missing.append("tokenizer.json")
    if missing:
        names = ", ".join(missing)
        return f"SCENECAP_ASR_MODEL_PATH holds no CTranslate2 Whisper model (missing {names})"
    return None
