"""The media store in a local folder (`file://<dir>`): one machine, or a shared filesystem."""

from __future__ import annotations

import os
import shutil
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from datetime import timedelta
from pathlib import Path
from typing import BinaryIO

from scenecap.core.errors import StoredObjectMissing, StoreUnavailable
from scenecap.store.base import MediaStore, StoredObject, ThreadedSink

_PARTIAL = ".partial-"
# Object keys and paths stay in the logs: a client is told only what went wrong.
_MISSING = "a stored object this needs is missing (deleted, or never written)"


class LocalStore(MediaStore):
    """Objects are files under the root; each is written beside its final name, then renamed
    into place, so a reader never sees half an object."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.root = Path(url.removeprefix("file://")).expanduser().resolve()

    def _path(self, key: str) -> Path:
        path = (self.root / key).resolve()
        if not path.is_relative_to(self.root) or _PARTIAL in path.name:
            raise ValueError(f"not a store key: {key!r}")
        return path

    async def put_stream(self, key: str, chunks: AsyncIterator[bytes]) -> None:
        final = self._path(key)
        partial = self._partial(final)
        try:
            with partial.open("wb") as out:
                sink = ThreadedSink(out.write)
                try:
                    async for chunk in chunks:
                        await sink.put(chunk)
                finally:
                    await sink.close()
            partial.replace(final)
        except BaseException:
            partial.unlink(missing_ok=True)
            raise

    def put_file(self, key: str, path: Path) -> None:
        final = self._path(key)
        partial = self._partial(final)
        try:
            shutil.copyfile(path, partial)
            partial.replace(final)
        except BaseException:
            partial.unlink(missing_ok=True)
            raise

    def put(self, key: str, data: bytes) -> None:
        final = self._path(key)
        partial = self._partial(final)
        try:
            partial.write_bytes(data)
            partial.replace(final)
        except BaseException:
            partial.unlink(missing_ok=True)
            raise

    def get(self, key: str) -> bytes:
        try:
            return self._path(key).read_bytes()
        except FileNotFoundError:
            raise StoredObjectMissing(_MISSING) from None

    def open(self, key: str) -> BinaryIO:
        try:
            return self._path(key).open("rb")
        except FileNotFoundError:
            raise StoredObjectMissing(_MISSING) from None

    def download(self, key: str, dest: Path) -> None:
        try:
            shutil.copyfile(self._path(key), dest)
        except FileNotFoundError:
            raise StoredObjectMissing(_MISSING) from None

    def copy(self, source: str, dest: str) -> None:
        final = self._path(dest)
        partial = self._partial(final)
        try:
            # A hard link costs nothing and both names stay whole; a copy where it cannot.
            try:
                os.link(self._path(source), partial)
            except OSError:
                shutil.copyfile(self._path(source), partial)
            partial.replace(final)
        except FileNotFoundError:
            partial.unlink(missing_ok=True)
            raise StoredObjectMissing(_MISSING) from None

    def size(self, key: str) -> int | None:
        try:
            return self._path(key).stat().st_size
        except FileNotFoundError:
            return None

    def list(self, prefix: str) -> Iterator[StoredObject]:
        # Walk only the deepest folder the prefix names, not the whole store.
        base = self.root / prefix.rpartition("/")[0]
        for path in sorted(base.rglob("*")) if base.is_dir() else []:
            key = path.relative_to(self.root).as_posix()
            if path.is_file() and key.startswith(prefix) and _PARTIAL not in path.name:
                yield StoredObject(key, path.stat().st_size)

    def delete_prefix(self, prefix: str) -> int:
        doomed = list(self.list(prefix))
        for item in doomed:
            self._path(item.key).unlink(missing_ok=True)
        if prefix.endswith("/"):  # a folder: leave no empty one behind (a purged job's)
            shutil.rmtree(self.root / prefix, ignore_errors=True)
        return len(doomed)

    def delete_partials(self, older_than: timedelta) -> int:
        before = time.time() - older_than.total_seconds()
        doomed = [p for p in self.root.rglob(f"*{_PARTIAL}*") if _mtime(p) < before]
        for path in doomed:
            path.unlink(missing_ok=True)
        return len(doomed)

    def ping(self) -> None:
        try:
            self.root.mkdir(parents=True, exist_ok=True)
            probe = self.root / f"{_PARTIAL}ping-{uuid.uuid4().hex}"
            probe.write_bytes(b"")
            probe.unlink()
        except OSError as exc:
            raise StoreUnavailable(
                f"the media store folder is not writable: {exc.strerror}"
            ) from None

    def local_path(self, key: str) -> Path | None:
        return self._path(key)

    def _partial(self, final: Path) -> Path:
        final.parent.mkdir(parents=True, exist_ok=True)
        return final.with_name(f"{final.name}{_PARTIAL}{uuid.uuid4().hex}")


def _mtime(path: Path) -> float:
    try:
        return path.stat().st_mtime
    except FileNotFoundError:  # renamed into place (or removed) meanwhile
        return time.time()
