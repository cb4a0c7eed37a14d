"""Fetch the job's media to a temp file and sniff its real type."""

from __future__ import annotations

from pathlib import Path

from scenecap.core.errors import MediaUnreachable
from scenecap.core.media import SNIFF_BYTES, SniffedType, sniff_media
from scenecap.core.safehttp import SafeHttpClient, UrlPolicy
from scenecap.core.settings import Settings


def fetch_media(
    media_url: str,
    media_data: bytes | None,
    directory: Path,
    settings: Settings,
    *,
    local_files: bool = False,
) -> tuple[Path, SniffedType]:
    """Write the media (uploaded bytes, or the URL's body) to directory; return path and type.

    `local_files` lets a `file://` URL name a file read in place: only `scenecap analyze`
    passes it (no setting can turn it on for the service, where it would be a hole).
    """
    path = directory / "media"
    if local_files and media_url.startswith("file://"):
        path = Path(media_url.removeprefix("file://"))
        if not path.is_file():
            raise MediaUnreachable(f"no such file: {path}")
    elif media_data is not None:
        path.write_bytes(media_data)
    else:
        policy = UrlPolicy(allow_private=settings.allow_private_urls)
        with (
            SafeHttpClient(
                policy,
                connect_timeout=settings.fetch_connect_timeout_seconds,
                max_redirects=settings.fetch_max_redirects,
            ) as client,
            path.open("wb") as out,
        ):
            client.download(
                media_url,
                out,
                max_bytes=settings.max_media_bytes,
                timeout=settings.fetch_timeout_seconds,
            )
    with path.open("rb") as media:
        return path, sniff_media(media.read(SNIFF_BYTES))
