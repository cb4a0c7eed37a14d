"""What a worker process keeps between jobs: settings, sessions, the store, the vision backend."""

from __future__ import annotations

import asyncio
import tempfile
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from sqlalchemy.orm import Session, sessionmaker

from scenecap.core.enums import JobStage
from scenecap.core.settings import Settings
from scenecap.store import MediaStore
from worker.vision.base import VisionBackend

T = TypeVar("T")


@dataclass
class Runtime:
    """What a worker process keeps between jobs."""

    settings: Settings
    session_factory: sessionmaker[Session]
    store: MediaStore
    backend: VisionBackend
    worker_id: str
    loop: asyncio.AbstractEventLoop
    # Told of every progress write (stage, percent); `scenecap analyze` draws its bar with it.
    progress_listener: Callable[[JobStage, int], None] | None = None
    # Read file:// media in place: `scenecap analyze` only, never a worker serving the API.
    local_files: bool = False
    # Where work items keep media downloaded from a remote store (shared by this machine).
    media_cache: Path = field(
        default_factory=lambda: Path(tempfile.gettempdir()) / "scenecap-media"
    )

    def run(self, coroutine: Coroutine[Any, Any, T]) -> T:
        # One loop per process keeps the backend's connection pool alive across jobs.
        return self.loop.run_until_complete(coroutine)
