"""Sniffing media types from their first bytes; data: URIs."""

from __future__ import annotations

import base64
from pathlib import Path

import cv2
import pytest

from scenecap.core.errors import InvalidMediaUrl, MediaTooLarge, UnsupportedMedia
from scenecap.core.media import claimed_image_size, decode_data_uri, sniff_media


@pytest.mark.parametrize(
    ("head", "kind", "mime"),
    [
        (b"\xff\xd8\xff\xe0", "image", "image/jpeg"),
        (b"\x89PNG\r\n\x1a\n", "image", "image/png"),
        (b"GIF89a", "image", "image/gif"),
        (b"RIFF\0\0\0\0WEBPVP8 ", "image", "image/webp"),
        (b"RIFF\0\0\0\0AVI LIST", "video", "video/x-msvideo"),
        (b"\0\0\0\x20ftypisom", "video", "video/mp4"),
        (b"\0\0\0\x14ftypqt  ", "video", "video/quicktime"),
        (b"\x1a\x45\xdf\xa3\x01\0\0\0webm", "video", "video/webm"),
        (
            b"\x47" + b"\0" * 187 + b"\x47" + b"\0" * 187 + b"\x47" + b"\0" * 10,
            "video",
            "video/mp2t",
        ),
    ],
    ids=["jpeg", "png", "gif", "webp", "avi", "mp4", "mov", "webm", "mpeg-ts"],
)
def test_known_types_are_recognised(head: bytes, kind: str, mime: str) -> None:
    sniffed = sniff_media(head)
    assert (sniffed.kind, sniffed.mime) == (kind, mime)


@pytest.mark.parametrize("head", [b"", b"<!doctype html>", b"%PDF-1.7", b"ID3\x04 audio"])
def test_anything_else_is_unsupported(head: bytes) -> None:
    with pytest.raises(UnsupportedMedia):
        sniff_media(head)


def test_generated_sample_is_mp4(media_dir: Path) -> None:
    assert sniff_media((media_dir / "sample.mp4").read_bytes()[:64]).mime == "video/mp4"


class TestDataUri:
    def test_decodes_base64(self) -> None:
        assert (
            decode_data_uri(
                "data:image/png;base64," + base64.b64encode(b"abc").decode(), max_bytes=10
            )
            == b"abc"
        )

    def test_refuses_payload_over_the_cap_before_decoding(self) -> None:
        with pytest.raises(MediaTooLarge):
            decode_data_uri("data:video/mp4;base64," + "A" * 400, max_bytes=100)

    @pytest.mark.parametrize(
        "uri", ["data:video/mp4,plain", "data:;base64,!!!", "data:video/mp4;base64,@@"]
    )
    def test_refuses_malformed_uris(self, uri: str) -> None:
        with pytest.raises(InvalidMediaUrl):
            decode_data_uri(uri, max_bytes=100)


@pytest.mark.parametrize("extension", [".png", ".jpg", ".webp", ".gif"])
@pytest.mark.parametrize("lossless", [False, True])
def test_claimed_image_size_reads_the_header_of_each_type(
    tmp_path: Path, extension: str, lossless: bool
) -> None:
    from tests.support.clips import flat, gif_image

    path = tmp_path / f"image{extension}"
    if extension == ".gif":
        gif_image(path)
        expected = cv2.VideoCapture(str(path)).read()[1].shape[:2]
    else:
        params = [cv2.IMWRITE_WEBP_QUALITY, 101] if lossless and extension == ".webp" else []
        image = flat("red", 333, 127)
        cv2.imwrite(str(path), image, params)
        expected = image.shape[:2]
    assert claimed_image_size(path.read_bytes()) == (expected[1], expected[0])


def test_claimed_image_size_is_none_for_what_it_cannot_read() -> None:
    assert claimed_image_size(b"") is None
    assert claimed_image_size(b"\xff\xd8\xff") is None
    assert claimed_image_size(b"not an image at all") is None
