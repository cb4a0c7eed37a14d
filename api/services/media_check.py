"""Check a media URL at submit time: scheme, SSRF policy, reachability, real type.

The check is a coroutine: a slow or silent server holds no thread. It is bounded in time
(URL_CHECK_SECONDS, for everything: lookups, redirects, the first bytes) and in number per
process (URL_CHECKS_IN_FLIGHT; a check that waits for a place past its deadline is refused
like a slow server).
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

from db.models import Upload
from scenecap.core.errors import MediaUnreachable
from scenecap.core.media import (
    SNIFF_BYTES,
    MediaKind,
    decode_data_uri,
    is_data_uri,
    sniff_media,
)
from scenecap.core.safehttp import AsyncSafeHttpClient, UrlPolicy
from scenecap.core.settings import Settings


@dataclass(frozen=True)
class InspectedMedia:
    """What the submitted media turned out to be."""

    kind: MediaKind
    mime: str
    data: bytes | None  # the decoded bytes of a data: URI
    display_url: str  # what the job shows as media_url (data URIs abbreviated)

    @classmethod
    def of_upload(cls, upload: Upload) -> InspectedMedia:
        """An upload was sniffed when it arrived."""
        kind: MediaKind = "image" if upload.content_type.startswith("image/") else "video"
        return cls(kind, upload.content_type, None, f"upload://{upload.id}")


class MediaInspector:
    """Fetches the first bytes of a media URL through the SSRF-safe client and sniffs them."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.policy = UrlPolicy(allow_private=settings.allow_private_urls)
        self.client = AsyncSafeHttpClient(
            self.policy,
            connect_timeout=settings.fetch_connect_timeout_seconds,
            max_redirects=settings.fetch_max_redirects,
        )
        self._places = asyncio.Semaphore(settings.url_checks_in_flight)

    async def inspect(self, media_url: str) -> InspectedMedia:
        """Return the media's kind, or raise the 4xx error that explains why not."""
        if is_data_uri(media_url):
            return await asyncio.to_thread(self.inspect_data, media_url)
        seconds = self.settings.url_check_seconds
        try:
            async with asyncio.timeout(seconds), self._places:  # one deadline for both
                head = await self.client.peek(media_url, nbytes=SNIFF_BYTES, timeout=seconds)
        except TimeoutError:
            raise MediaUnreachable(
                f"the media URL did not answer within {seconds:g} s", {"timeout": seconds}
            ) from None
        sniffed = sniff_media(head)
        return InspectedMedia(sniffed.kind, sniffed.mime, None, media_url)

    def inspect_data(self, media_url: str) -> InspectedMedia:
        """A data: URI's media (decoded and sniffed here: no network)."""
        data = decode_data_uri(media_url, max_bytes=self.settings.max_media_bytes)
        sniffed = sniff_media(data[:SNIFF_BYTES])
        display = f"data:{sniffed.mime};base64,...({len(data)} bytes)"
        return InspectedMedia(sniffed.kind, sniffed.mime, data, display)

    def check_webhook_url(self, url: str) -> None:
        """Apply the SSRF policy to a webhook URL (it is checked again at delivery)."""
        self.policy.check(url)

    async def aclose(self) -> None:
        await self.client.aclose()
