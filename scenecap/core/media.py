"""Media type sniffing from magic bytes, and ``data:`` URI decoding."""

from __future__ import annotations

import base64
import binascii
import re
import uuid
from dataclasses import dataclass
from typing import Literal
from urllib.parse import unquote, urlsplit

from scenecap.core.errors import InvalidMediaUrl, MediaTooLarge, UnsupportedMedia, UploadNotFound

MediaKind = Literal["video", "image"]
SNIFF_BYTES = 4096
MAX_FRAMES_PER_SEGMENT = 16  # a request's frames_per_segment (and how segments number them)
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


UPLOAD_SCHEME = "upload://"


def is_upload_url(url: str) -> bool:
    """Tell whether url names an upload of this service (`upload://<id>`)."""
    return url.startswith(UPLOAD_SCHEME)


def upload_id(url: str) -> uuid.UUID | None:
    """The id an `upload://<id>` URL names (None for any other URL); malformed: 404 later."""
    if not url.startswith(UPLOAD_SCHEME):
        return None
    try:
        return uuid.UUID(url.removeprefix(UPLOAD_SCHEME))
    except ValueError:
        raise UploadNotFound(f"no upload {url.removeprefix(UPLOAD_SCHEME)!r}") from None


# The metadata types the vision model labels, in the order results list them (the default).
METADATA_TYPES = ("categories", "participants", "actions", "scene", "tags")
# What a client may ask for: those, and the speech transcript (not among the defaults).
TRANSCRIPT = "transcript"
REQUESTABLE = (*METADATA_TYPES, TRANSCRIPT)


def claimed_image_size(head: bytes) -> tuple[int, int] | None:
    """(width, height) that an image's header claims, read without decoding anything.

    FFmpeg gives up on sizes past its own limits and reports no size at all, so a claimed
    60000x60000 would look merely unreadable; reading the header names the real problem.
    """
    if head.startswith(b"\x89PNG\r\n\x1a\n") and head[12:16] == b"IHDR" and len(head) >= 24:
        return int.from_bytes(head[16:20], "big"), int.from_bytes(head[20:24], "big")
    if head[:6] in (b"GIF87a", b"GIF89a") and len(head) >= 10:
        return int.from_bytes(head[6:8], "little"), int.from_bytes(head[8:10], "little")
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP" and len(head) >= 30:
        kind, body = head[12:16], head[20:]
        if kind == b"VP8X":
            return int.from_bytes(body[4:7], "little") + 1, int.from_bytes(body[7:10], "little") + 1
        if kind == b"VP8L":
            bits = int.from_bytes(body[1:5], "little")
            return (bits & 0x3FFF) + 1, ((bits >> 14) & 0x3FFF) + 1
        if kind == b"VP8 ":
            return int.from_bytes(body[6:8], "little") & 0x3FFF, int.from_bytes(
                body[8:10], "little"
            ) & 0x3FFF
    if head[:2] == b"\xff\xd8":
        return _jpeg_size(head)
    return None


def _jpeg_size(head: bytes) -> tuple[int, int] | None:
    at = 2
    while at + 9 <= len(head) and head[at] == 0xFF:
        marker = head[at + 1]
        length = int.from_bytes(head[at + 2 : at + 4], "big")
        # SOF0..SOF15 carry the size, except DHT (C4), JPG (C8) and DAC (CC).
        if 0xC0 <= marker <= 0xCF and marker not in (0xC4, 0xC8, 0xCC):
            height = int.from_bytes(head[at + 5 : at + 7], "big")
            return int.from_bytes(head[at + 7 : at + 9], "big"), height
        at += 2 + length
    return None


NAME_CHARS = 255


def file_name(raw: str | None) -> str | None:
    """A file name as a client sent it, made safe to keep and show: its last path part (a
    browser may send C:\\fakepath\\clip.mp4), without control characters, at most 255
    characters; None if nothing is left."""
    if not raw:
        return None
    last = re.split(r"[/\\]", raw)[-1]
    cleaned = "".join(c for c in last if c.isprintable()).strip()
    return cleaned[:NAME_CHARS] or None


def media_name(url: str, uploaded_as: str | None = None) -> str | None:
    """What people call the media: an upload's file name, else the last part of an http(s)
    URL's path, decoded; None for a data: URI or a URL that names nothing."""
    if uploaded_as:
        return uploaded_as
    if not url.startswith(("http://", "https://")):
        return None
    return file_name(unquote(urlsplit(url).path))
