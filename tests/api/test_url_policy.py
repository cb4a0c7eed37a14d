"""One URL policy at submit time: a host refused as a media URL is refused as a webhook URL,
however it is spelt (the SSRF checks behind both are the same)."""

from __future__ import annotations

import base64
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest

from api.main import create_app
from scenecap.core.settings import Settings
from tests.conftest import serve_app

SPELLINGS = [
    "http://127.0.0.1/v.mp4",
    "http://127.1/v.mp4",
    "http://2130706433/v.mp4",
    "http://0x7f000001/v.mp4",
    "http://localhost/v.mp4",
    "http://0.0.0.0/v.mp4",
    "http://[::1]/v.mp4",
    "http://[::]/v.mp4",
    "http://[::ffff:127.0.0.1]/v.mp4",
    "http://[::127.0.0.1]/v.mp4",
    "http://[::ffff:0:127.0.0.1]/v.mp4",
    "http://[64:ff9b::7f00:1]/v.mp4",
    "http://[2002:7f00:1::]/v.mp4",
    "http://[fe80::1]/v.mp4",
    "http://10.0.0.1/v.mp4",
    "http://192.168.1.1/v.mp4",
    "http://169.254.169.254/latest/meta-data",
    "http://100.64.0.1/v.mp4",
    "http://user:secret@example.com/v.mp4",
    "ftp://example.com/v.mp4",
    "file:///etc/passwd",
]
REFUSALS = {"URL_NOT_ALLOWED", "INVALID_MEDIA_URL", "UNSUPPORTED_URL_SCHEME"}


@pytest.fixture(scope="module")
def strict_api(settings: Settings, database: str) -> Iterator[str]:
    """The API as production runs it: private addresses refused."""
    with serve_app(create_app(settings.model_copy(update={"allow_private_urls": False}))) as url:
        yield url


@pytest.mark.parametrize("url", SPELLINGS)
def test_a_refused_media_url_is_refused_as_a_webhook_url_with_the_same_code(
    strict_api: str, new_key: Callable[[], str], media_dir: Path, url: str
) -> None:
    headers = {"Authorization": f"Bearer {new_key()}"}
    video = base64.b64encode((media_dir / "sample.mp4").read_bytes()).decode()

    def submit(**fields: str) -> httpx.Response:
        body = {"media_url": f"data:video/mp4;base64,{video}", **fields}
        return httpx.post(f"{strict_api}/v2/media/categories", json=body, headers=headers)

    as_media, as_webhook = submit(media_url=url), submit(webhook_url=url)
    assert as_media.status_code == as_webhook.status_code == 422, (as_media.text, as_webhook.text)
    codes = as_media.json()["error"]["code"], as_webhook.json()["error"]["code"]
    assert codes[0] == codes[1] and codes[0] in REFUSALS, codes
