"""The report's player (docs/api.md, "The report"): the job's stored media served in byte
ranges to the key or a share link's token, while the media is kept; and in a real headless
Chromium, the video plays and a click on a frame seeks it there."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx
import pytest
from playwright.sync_api import Browser

from scenecap.core.settings import Settings
from scenecap.store import open_store, paths
from tests.api.test_categories import assert_error
from tests.api.test_report_browser import share
from tests.conftest import is_terminal, poll_job

pytestmark = pytest.mark.usefixtures("worker")


@pytest.fixture
def finished(client: httpx.Client, media_server: str, fake_vlm: Any) -> dict[str, Any]:
    created = client.post(
        "/v2/media/categories", json={"media_url": f"{media_server}/sample.mp4", "max_frames": 4}
    )
    job = poll_job(client, created.json()["job_id"], until=is_terminal)
    assert job["status"] == "COMPLETED"
    return job


def test_the_media_is_served_whole_or_in_ranges(
    client: httpx.Client, finished: dict[str, Any], media_dir: Path
) -> None:
    original = (media_dir / "sample.mp4").read_bytes()
    path = f"/v2/media/categories/{finished['job_id']}/media"
    whole = client.get(path)
    assert whole.status_code == 200 and whole.content == original
    assert whole.headers["content-type"] == "video/mp4"
    assert whole.headers["accept-ranges"] == "bytes"
    part = client.get(path, headers={"Range": "bytes=100-199"})
    assert part.status_code == 206 and part.content == original[100:200]
    assert part.headers["content-range"] == f"bytes 100-199/{len(original)}"
    tail = client.get(path, headers={"Range": "bytes=-10"})
    assert tail.status_code == 206 and tail.content == original[-10:]
    rest = client.get(path, headers={"Range": f"bytes={len(original) - 5}-"})
    assert rest.content == original[-5:]
    past = client.get(path, headers={"Range": f"bytes={len(original)}-"})
    assert_error(past, 416, "RANGE_NOT_SATISFIABLE")
    assert_error(client.get(path, headers={"Range": "pages=1-2"}), 416, "RANGE_NOT_SATISFIABLE")


def test_a_share_link_plays_it_and_an_expired_media_is_gone(
    client: httpx.Client, api_url: str, finished: dict[str, Any], settings: Settings
) -> None:
    job_id = finished["job_id"]
    token = share(client, api_url, job_id).split("token=")[1]
    played = httpx.get(
        f"{api_url}/v2/media/categories/{job_id}/media",
        params={"token": token},
        headers={"Range": "bytes=0-15"},
    )
    assert played.status_code == 206 and played.headers["referrer-policy"] == "no-referrer"
    assert httpx.get(f"{api_url}/v2/media/categories/{job_id}/media").status_code == 401
    open_store(settings).delete_prefix(paths.media(job_id))  # as retention does
    assert_error(client.get(f"/v2/media/categories/{job_id}/media"), 404, "NOT_FOUND")


def test_the_report_plays_the_video_and_a_click_seeks_it(
    browser: Browser,
    client: httpx.Client,
    api_url: str,
    finished: dict[str, Any],
) -> None:
    frames = finished["results"]["frames"]
    page = browser.new_page(viewport={"width": 1200, "height": 900})
    page.goto(share(client, api_url, finished["job_id"]), wait_until="load")
    # Its metadata came over ranged requests with the page's token.
    page.wait_for_function(
        "document.getElementById('player') && document.getElementById('player').readyState >= 1",
        timeout=15_000,
    )
    assert page.evaluate("document.getElementById('player').duration") == pytest.approx(
        finished["media"]["duration"], abs=0.2
    )
    target = frames[2]
    page.locator(f"#frame-{target['index']} .caption").click()
    page.wait_for_function(
        f"Math.abs(document.getElementById('player').currentTime - {target['timestamp']}) < 0.5",
        timeout=10_000,
    )
    page.close()
