"""The media store in an S3 bucket (`s3://<bucket>/<prefix>`): AWS S3 or any S3-compatible
server (SeaweedFS, MinIO, Ceph, R2) at SCENECAP_S3_ENDPOINT_URL.

obstore (Rust's object_store) does the talking: multipart uploads fed by a stream, ranged
reads behind a file-like object, batched deletes; credentials come from the standard AWS_*
variables (or the instance's role). Why obstore rather than boto3: README, "Media store".
"""

from __future__ import annotations

import io
import logging
from collections.abc import AsyncIterator, Callable, Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any, BinaryIO, TypeVar

import obstore
from obstore.exceptions import BaseError, NotFoundError
from obstore.store import S3Store as ObjectStore

from scenecap.core.errors import StoredObjectMissing, StoreUnavailable
from scenecap.store.base import CHUNK, MediaStore, StoredObject

T = TypeVar("T")
log = logging.getLogger(__name__)
_DELETE_BATCH = 1000  # what one S3 DeleteObjects request takes
PART = 5 * CHUNK


class S3Store(MediaStore):
    def __init__(self, url: str, *, endpoint_url: str | None, region: str | None) -> None:
        self.url = url
        bucket, _, prefix = url.removeprefix("s3://").partition("/")
        options: dict[str, Any] = {}
        if endpoint_url:
            options["endpoint"] = endpoint_url
            options["allow_http"] = endpoint_url.startswith("http://")
            # Path-style addressing: S3-compatible servers rarely have wildcard DNS.
            options["virtual_hosted_style_request"] = False
        if region:
            options["region"] = region
        self.store = ObjectStore(
            bucket,
            prefix=prefix.strip("/") or None,
            # Fail within seconds when the store is down: object_store's defaults retry
            # for up to three minutes, which /readyz and a waiting upload cannot afford.
            client_options={"connect_timeout": "5s", "timeout": "120s"},
            retry_config={"max_retries": 3, "retry_timeout": timedelta(seconds=15)},
            **options,
        )

    async def put_stream(self, key: str, chunks: AsyncIterator[bytes]) -> None:
        # Multipart under the hood; an iterator that raises aborts it, leaving no object. Parts
        # of 5 MB (S3's least), four in flight: at most ~20 MB of an upload held in memory.
        put = obstore.put_async(self.store, key, chunks, chunk_size=PART, max_concurrency=4)
        await _guard_async(key, put)

    def put_file(self, key: str, path: Path) -> None:
        _guard(key, lambda: obstore.put(self.store, key, path, chunk_size=PART, max_concurrency=4))

    def put(self, key: str, data: bytes) -> None:
        _guard(key, lambda: obstore.put(self.store, key, data))

    def get(self, key: str) -> bytes:
        return _guard(key, lambda: bytes(obstore.get(self.store, key).bytes()))

    def open(self, key: str) -> BinaryIO:
        reader = _guard(key, lambda: obstore.open_reader(self.store, key, buffer_size=CHUNK))
        return _RangedReader(reader)  # type: ignore[return-value]

    def download(self, key: str, dest: Path) -> None:
        def stream() -> None:
            with dest.open("wb") as out:
                for chunk in obstore.get(self.store, key).stream(min_chunk_size=CHUNK):
                    out.write(chunk)

        _guard(key, stream)

    def copy(self, source: str, dest: str) -> None:
        _guard(source, lambda: obstore.copy(self.store, source, dest))

    def size(self, key: str) -> int | None:
        try:
            return int(_guard(key, lambda: obstore.head(self.store, key))["size"])
        except StoredObjectMissing:
            return None

    def list(self, prefix: str) -> Iterator[StoredObject]:
        batches = _guard(prefix, lambda: obstore.list(self.store, prefix=prefix))
        try:
            for batch in batches:
                for meta in batch:
                    yield StoredObject(str(meta["path"]), int(meta["size"]))
        except BaseError as exc:
            raise _unavailable(prefix, exc) from None

    def delete_prefix(self, prefix: str) -> int:
        doomed = [item.key for item in self.list(prefix)]
        for start in range(0, len(doomed), _DELETE_BATCH):
            batch = doomed[start : start + _DELETE_BATCH]
            _guard(prefix, lambda batch=batch: obstore.delete(self.store, batch))  # type: ignore[misc]
        return len(doomed)

    def ping(self) -> None:
        # Listing needs the bucket to exist and the credentials to be accepted.
        batches = _guard("", lambda: obstore.list(self.store, prefix="", chunk_size=1))
        try:
            next(iter(batches), None)
        except BaseError as exc:
            raise _unavailable("", exc) from None


class _RangedReader(io.RawIOBase):
    """obstore's reader as a plain binary file (bytes, not obstore's Bytes): each read past
    its megabyte buffer is one ranged GET."""

    def __init__(self, reader: Any) -> None:
        self.reader = reader

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def read(self, size: int = -1) -> bytes:
        return bytes(self.reader.read(None if size < 0 else size))

    def readinto(self, buffer: Any) -> int:
        data = self.read(len(buffer))
        buffer[: len(data)] = data
        return len(data)

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        return int(self.reader.seek(offset, whence))

    def tell(self) -> int:
        return int(self.reader.tell())

    def close(self) -> None:
        self.reader.close()
        super().close()


def _guard(key: str, call: Callable[[], T]) -> T:
    try:
        return call()
    except (NotFoundError, FileNotFoundError):
        log.info("the store has no %s", key)
        raise StoredObjectMissing(_MISSING) from None
    except (BaseError, OSError) as exc:
        raise _unavailable(key, exc) from None


async def _guard_async(key: str, call: Any) -> None:
    try:
        await call
    except (NotFoundError, FileNotFoundError):
        log.info("the store has no %s", key)
        raise StoredObjectMissing(_MISSING) from None
    except (BaseError, OSError) as exc:
        raise _unavailable(key, exc) from None


_MISSING = "a stored object this needs is missing (deleted, or never written)"


def _unavailable(key: str, exc: BaseException) -> StoreUnavailable:
    """The store failed: its endpoint, the key and the request's details go to the log only
    (object_store's message carries them; its first line suffices)."""
    reason = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:300]
    log.warning("media store failed on %s: %s", key, reason)
    return StoreUnavailable(f"the media store failed ({type(exc).__name__}); try again shortly")
