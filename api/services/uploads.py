"""Uploads: a local file streamed into the media store, checked on the way, usable as
`upload://<id>` by its key until it expires."""

from __future__ import annotations

import asyncio
import email.message
import hashlib
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import timedelta

from sqlalchemy.orm import Session, sessionmaker
from starlette.concurrency import run_in_threadpool

from api.auth import Caller
from db import uploads
from db.models import Upload
from scenecap.core.enums import utcnow
from scenecap.core.errors import MediaTooLarge, RequestTimeout, TooManyUploads, UploadNotFound
from scenecap.core.media import SNIFF_BYTES, SniffedType, sniff_media, upload_id
from scenecap.store import MediaStore, paths
from scenecap.store.base import ThreadedSink


@dataclass
class _Intake:
    """What is learnt of an upload's bytes while they stream past (the hashing runs on a
    thread of its own: on the event loop it halved the upload's speed)."""

    limit: int
    size: int = 0
    head: bytes = b""
    sniffed: SniffedType | None = None
    digest: hashlib._Hash = field(default_factory=hashlib.sha256)
    hasher: ThreadedSink | None = None

    async def take(self, chunk: bytes) -> None:
        self.size += len(chunk)
        if self.size > self.limit:
            raise MediaTooLarge(
                f"the upload is over the limit of {self.limit} bytes", {"limit": self.limit}
            )
        if self.sniffed is None and len(self.head) < SNIFF_BYTES:
            self.head += chunk[: SNIFF_BYTES - len(self.head)]
            if len(self.head) >= SNIFF_BYTES:
                self.sniffed = sniff_media(self.head)  # refused before more is written
        self.hasher = self.hasher or ThreadedSink(self.digest.update)
        await self.hasher.put(chunk)

    async def sha256(self) -> str:
        if self.hasher is not None:
            await self.hasher.close()
        return self.digest.hexdigest()


def disposition_name(header: str | None) -> str | None:
    """The file name a Content-Disposition header gives (filename*=UTF-8'' first)."""
    if not header:
        return None
    message = email.message.Message()
    message["content-disposition"] = header
    found = message.get_filename()
    return str(found) if found else None


async def receive_upload(
    store: MediaStore,
    session_factory: sessionmaker[Session],
    key: Caller,
    body: AsyncIterator[bytes],
    *,
    max_bytes: int,
    ttl_hours: float,
    name: str | None = None,
) -> Upload:
    """Stream the body into the store, checking size and type as it comes; record it.

    Refused (413 past max_bytes, 415 when the first bytes are neither image nor video): the
    body stops being read and nothing is left in the store.
    """
    intake = _Intake(max_bytes)
    upload_id = uuid.uuid4()

    async def checked() -> AsyncIterator[bytes]:
        async for chunk in body:
            if chunk:
                await intake.take(chunk)
                yield chunk
        if intake.sniffed is None:  # shorter than the sniffing window (or empty)
            intake.sniffed = sniff_media(intake.head)

    try:
        await store.put_stream(paths.upload(upload_id), checked())
    finally:
        sha256 = await intake.sha256()
    assert intake.sniffed is not None
    sniffed = intake.sniffed

    def record() -> Upload:
        with session_factory.begin() as session:
            return uploads.create_upload(
                session,
                id=upload_id,
                api_key_id=key.id,
                bytes=intake.size,
                sha256=sha256,
                content_type=sniffed.mime,
                name=name,
                expires_at=utcnow() + timedelta(hours=ttl_hours),
            )

    try:
        return await run_in_threadpool(record)
    except BaseException:
        await run_in_threadpool(store.delete_prefix, paths.upload(upload_id))
        raise


async def within_idle(chunks: AsyncIterator[bytes], seconds: float) -> AsyncIterator[bytes]:
    """The chunks, refused with 408 when none comes for `seconds` (a stalled upload would
    hold its connection and its partial object forever)."""
    iterator = aiter(chunks)
    while True:
        try:
            chunk = await asyncio.wait_for(anext(iterator), seconds)
        except StopAsyncIteration:
            return
        except TimeoutError:
            raise RequestTimeout(
                f"the upload stalled for {seconds:g} s; nothing was kept",
                {"idle_seconds": seconds},
            ) from None
        yield chunk


class UploadSlots:
    """Uploads in progress per key in this process, at most MAX_UPLOADS_PER_KEY each."""

    def __init__(self, per_key: int) -> None:
        self.per_key = per_key
        self._open: Counter[uuid.UUID] = Counter()

    def in_progress(self, key_id: uuid.UUID) -> int:
        return self._open[key_id]

    @contextmanager
    def slot(self, key_id: uuid.UUID) -> Iterator[None]:
        if self._open[key_id] >= self.per_key:
            raise TooManyUploads(
                f"this key already has {self.per_key} uploads in progress",
                {"limit": self.per_key, "retry_after": 5},
            )
        self._open[key_id] += 1
        try:
            yield
        finally:
            self._open[key_id] -= 1
            if not self._open[key_id]:
                del self._open[key_id]


def owned_upload(session: Session, key: Caller, url: str) -> Upload:
    """The upload an `upload://<id>` URL names, if it is the key's and has not expired."""
    found = upload_id(url)
    upload = uploads.get_owned_upload(session, found, key.id) if found else None
    if upload is None:
        raise UploadNotFound(f"no upload {url.removeprefix('upload://')!r} for this key")
    return upload
