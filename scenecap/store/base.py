"""The media store's interface and where each thing lives in it (scenecap.store says why)."""

from __future__ import annotations

import asyncio
import queue
import threading
import uuid
from abc import ABC, abstractmethod
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import BinaryIO

CHUNK = 1024 * 1024


@dataclass(frozen=True)
class StoredObject:
    key: str
    size: int


class paths:
    """Where each thing lives in the store."""

    @staticmethod
    def job(job_id: uuid.UUID) -> str:
        return f"jobs/{job_id}/"

    @staticmethod
    def media(job_id: uuid.UUID) -> str:
        return f"jobs/{job_id}/media"

    @staticmethod
    def thumbnail(job_id: uuid.UUID, index: int) -> str:
        """A frame's thumbnail (frame mode), or a segment's (segment mode)."""
        return f"jobs/{job_id}/thumbnails/{index}.jpg"

    @staticmethod
    def probe(job_id: uuid.UUID) -> str:
        """What the probe measured, timeline included: segment tasks need not demux again."""
        return f"jobs/{job_id}/probe"

    @staticmethod
    def transcript(job_id: uuid.UUID) -> str:
        """A frame-mode job's transcript, kept so a retried job does not pay for it again."""
        return f"jobs/{job_id}/transcript.json"

    @staticmethod
    def upload(upload_id: uuid.UUID) -> str:
        return f"uploads/{upload_id}"


class MediaStore(ABC):
    """Objects by key. Failures to reach the store raise StoreUnavailable; a missing object
    raises StoredObjectMissing (or gives None where the method says so)."""

    url: str

    @abstractmethod
    async def put_stream(self, key: str, chunks: AsyncIterator[bytes]) -> None:
        """Store what the chunks add up to; if the iterator raises, store nothing."""

    @abstractmethod
    def put_file(self, key: str, path: Path) -> None:
        """Store a local file (streamed)."""

    @abstractmethod
    def put(self, key: str, data: bytes) -> None:
        """Store a small object."""

    @abstractmethod
    def get(self, key: str) -> bytes:
        """A small object's bytes."""

    def delete_partials(self, older_than: timedelta) -> int:
        """Delete what writes cut short by a crash left behind, untouched for `older_than`;
        how many. (S3 keeps no such objects: its unfinished multipart uploads are aborted by
        the bucket's lifecycle rule, README "Media store".)"""
        return 0

    @abstractmethod
    def open(self, key: str) -> BinaryIO:
        """A seekable reader: each read fetches only the range it needs."""

    @abstractmethod
    def download(self, key: str, dest: Path) -> None:
        """Stream an object into a local file."""

    @abstractmethod
    def copy(self, source: str, dest: str) -> None:
        """Copy an object within the store (server-side where the store can)."""

    @abstractmethod
    def size(self, key: str) -> int | None:
        """The object's size, or None if there is no such object."""

    @abstractmethod
    def list(self, prefix: str) -> Iterator[StoredObject]:
        """Every object whose key starts with prefix."""

    @abstractmethod
    def delete_prefix(self, prefix: str) -> int:
        """Delete every object whose key starts with prefix; return how many there were."""

    @abstractmethod
    def ping(self) -> None:
        """Raise StoreUnavailable unless the store answers (and accepts our credentials)."""

    def local_path(self, key: str) -> Path | None:
        """The object's own file, when the store is a local folder (read it in place)."""
        return None


class ThreadedSink:
    """Hands chunks to a function (a file's write, a hash's update) on a thread of its own, so
    the event loop goes on receiving while the last megabytes are written or hashed. The loop
    waits only when the thread is `limit` bytes behind; the thread's error is raised at close.
    """

    def __init__(self, consume: Callable[[bytes], object], limit: int = 8 * CHUNK) -> None:
        self.consume = consume
        self.queue: queue.Queue[bytes | None] = queue.Queue(maxsize=max(1, limit // (64 * 1024)))
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    async def put(self, chunk: bytes) -> None:
        if self.error is not None:
            raise self.error
        try:
            self.queue.put_nowait(chunk)
        except queue.Full:
            await asyncio.to_thread(self.queue.put, chunk)

    async def close(self) -> None:
        """Wait for the thread to consume everything; raise what it raised."""
        await asyncio.to_thread(self.queue.put, None)
        await asyncio.to_thread(self.thread.join)
        if self.error is not None:
            raise self.error

    def _run(self) -> None:
        while (chunk := self.queue.get()) is not None:
            if self.error is None:
                try:
                    self.consume(chunk)
                except BaseException as exc:  # handed to the loop at its next put or close
                    self.error = exc
