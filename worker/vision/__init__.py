"""Vision backends: `local` (OpenCV measurements) and `openai` (any chat-completions VLM)."""

from __future__ import annotations

from scenecap.core.settings import Settings
from worker.vision.base import VisionBackend


def make_backend(settings: Settings) -> VisionBackend:
    """Build the backend the settings name."""
    if settings.vision_backend == "openai":
        from worker.vision.openai_compat import OpenAIBackend

        return OpenAIBackend(settings)
    from worker.vision.local import LocalBackend

    return LocalBackend()
