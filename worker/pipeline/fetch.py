"""Get a job's media as a local file: fetched once, then read from the media store.

The first attempt fetches it (from its URL, or the data: URI's bytes the job row carried) and
puts it in the store; every later attempt, on any worker, reads the store instead of going
back to the origin.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import time
import uuid
from pathlib import Path

from scenecap.core.errors import MediaUnreachable
from scenecap.core.safehttp import SafeHttpClient, UrlPolicy
from scenecap.core.settings import Settings
from scenecap.store import MediaStore, paths


def job_media(
    job_id: uuid.UUID,
    media_url: str,
    media_data: bytes | None,
    store: MediaStore,
    directory: Path,
    settings: Settings,
    *,
    local_files: bool = False,
) -> tuple[Path, str | None]:
    """The job's media as a file: in the store's own folder, or in `directory`; and its
    SHA-256 when it was fetched now (taken on the way in, so the file is not read again).

    `local_files` lets a `file://` URL name a file read in place: only `scenecap analyze`
    passes it (no setting can turn it on for the service, where it would be a hole).
    """
    if local_files and media_url.startswith("file://"):
        path = Path(media_url.removeprefix("file://"))
        if not path.is_file():
            raise MediaUnreachable(f"no such file: {path}")
        return path, None
    key = paths.media(job_id)
    if store.size(key) is None:
        fetched = directory / "media"
        if media_data is not None:
            fetched.write_bytes(media_data)
            sha256 = hashlib.sha256(media_data).hexdigest()
        else:
            sha256 = fetch_url(media_url, fetched, settings)
        store.put_file(key, fetched)
        return fetched, sha256
    stored = store.local_path(key)
    if stored is not None:
        return stored, None
    copy = directory / "media"
    store.download(key, copy)
    return copy, None


def fetch_url(media_url: str, dest: Path, settings: Settings) -> str:
    """Download a URL through the SSRF-safe client, within the byte and time caps; return
    the SHA-256 of what was written."""
    policy = UrlPolicy(allow_private=settings.allow_private_urls)
    with (
        SafeHttpClient(
            policy,
            connect_timeout=settings.fetch_connect_timeout_seconds,
            max_redirects=settings.fetch_max_redirects,
        ) as client,
        dest.open("wb") as out,
    ):
        download = client.download(
            media_url,
            out,
            max_bytes=settings.max_media_bytes,
            timeout=settings.fetch_timeout_seconds,
        )
    return download.sha256


# A copy of a job's media downloaded for its work items is kept this long after its last use:
# the job's other tasks on this machine read it instead of downloading it again.
CACHE_IDLE_SECONDS = 900


def stored_media(
    job_id: uuid.UUID, media_url: str, store: MediaStore, cache: Path, *, local_files: bool
) -> Path:
    """A job's media for one of its work items: read in place when the store is a folder on
    this machine, else a copy in `cache` shared by the machine's workers."""
    if local_files and media_url.startswith("file://"):
        return Path(media_url.removeprefix("file://"))
    key = paths.media(job_id)
    stored = store.local_path(key)
    if stored is not None:
        return stored
    copy = cache / str(job_id)
    if not copy.exists():
        cache.mkdir(parents=True, exist_ok=True)
        _forget_idle(cache)
        partial = cache / f".{job_id}.{os.getpid()}.part"
        store.download(key, partial)
        os.replace(partial, copy)  # whole or not at all, for the other workers here
    os.utime(copy)
    return copy


def _forget_idle(cache: Path) -> None:
    idle_since = time.time() - CACHE_IDLE_SECONDS
    for entry in cache.iterdir():
        with contextlib.suppress(FileNotFoundError):  # another worker removed it first
            if entry.stat().st_mtime < idle_since:
                entry.unlink()
