"""The media store: what scenecap keeps outside PostgreSQL, in a local folder or an S3 bucket.

    SCENECAP_MEDIA_STORE=file:///var/lib/scenecap/media      one machine
    SCENECAP_MEDIA_STORE=s3://bucket/prefix                   any number of machines

Keys are "/"-separated paths under the store's root (see `paths`): a job's fetched media, its
frames' thumbnails, and uploads. Every write is atomic: a failed one leaves nothing that
looks complete. Nothing here loads a whole video into memory: media is streamed in and out
in chunks, and read back in ranges.
"""

from __future__ import annotations

from scenecap.core.settings import Settings
from scenecap.store.base import CHUNK, MediaStore, StoredObject, paths

__all__ = ["CHUNK", "MediaStore", "StoredObject", "open_store", "paths"]


def open_store(settings: Settings) -> MediaStore:
    """The store SCENECAP_MEDIA_STORE names."""
    url = settings.media_store
    if url.startswith("s3://"):
        from scenecap.store.s3 import S3Store

        return S3Store(url, endpoint_url=settings.s3_endpoint_url, region=settings.s3_region)
    from scenecap.store.local import LocalStore

    return LocalStore(url)
