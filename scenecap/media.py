"""Media type sniffing from magic bytes, and ``data:`` URI decoding."""

from __future__ import annotations

import base64
import binascii
import re
from dataclasses import dataclass
from typing import Literal

from scenecap.errors import InvalidMediaUrl, MediaTooLarge, UnsupportedMedia

MediaKind = Literal["video", "image"]
SNIFF_BYTES = 4096
_MP4_BOXES = {b"ftyp", b"moov", b"mdat", b"free", b"wide", b"skip", b"pnot"}
_DATA_URI = re.compile(r"^data:(?P<mime>[\w.+-]+/[\w.+-]+)?(?P<params>(;[^,;]+)*?);base64,", re.I)


@dataclass(frozen=True)
class SniffedType:
    """What the first bytes of a file say it is."""

    kind: MediaKind
    mime: str


def sniff_media(head: bytes) -> SniffedType:
    """Name the media type from the first bytes, or raise UnsupportedMedia."""
    if head[:3] == b"\xff\xd8\xff":
        return SniffedType("image", "image/jpeg")
    if head[:8] == b"\x89PNG\r\n\x1a\n":
        return SniffedType("image", "image/png")
    if head[:6] in (b"GIF87a", b"GIF89a"):
        return SniffedType("image", "image/gif")
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return SniffedType("image", "image/webp")
    if head[:4] == b"RIFF" and head[8:12] == b"AVI ":
        return SniffedType("video", "video/x-msvideo")
    if head[4:8] in _MP4_BOXES:
        brand = head[8:12]
        mime = "video/quicktime" if brand == b"qt  " else "video/mp4"
        return SniffedType("video", mime)
    if head[:4] == b"\x1a\x45\xdf\xa3":
        return SniffedType("video", "video/webm" if b"webm" in head[:64] else "video/x-matroska")
    if len(head) > 376 and head[0] == head[188] == head[376] == 0x47:
        return SniffedType("video", "video/mp2t")
    raise UnsupportedMedia(
        "the media is not a supported image or video (checked its first bytes)",
        {"supported": ["mp4", "mov", "mkv", "webm", "avi", "ts", "jpeg", "png", "webp", "gif"]},
    )


def decode_data_uri(uri: str, *, max_bytes: int) -> bytes:
    """Decode a base64 ``data:`` URI, refusing payloads over max_bytes before decoding."""
    match = _DATA_URI.match(uri)
    if match is None:
        raise InvalidMediaUrl("data URIs must look like data:<mime>;base64,<payload>")
    payload = uri[match.end() :]
    if len(payload) * 3 // 4 > max_bytes:
        raise MediaTooLarge(f"media exceeds the limit of {max_bytes} bytes", {"limit": max_bytes})
    try:
        return base64.b64decode(payload, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise InvalidMediaUrl("the data URI's base64 payload does not decode") from exc


def is_data_uri(url: str) -> bool:
    """Tell whether url is a data: URI rather than a network URL."""
    return url[:5].lower() == "data:"


# The metadata types a client may ask for, in the order results list them.
METADATA_TYPES = ("categories", "participants", "actions", "scene", "tags")
