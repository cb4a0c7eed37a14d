"""The report in a real headless Chromium: thumbnails load, captions show, progress is live."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from playwright.sync_api import Browser

from tests.conftest import ARTIFACTS, is_terminal, poll_job

pytestmark = pytest.mark.usefixtures("worker")


def share(client: httpx.Client, api_url: str, job_id: str) -> str:
    response = client.post(f"/v2/media/categories/{job_id}/share")
    assert response.status_code == 200
    return api_url + response.json()["report_url"]


def test_a_completed_jobs_report_shows_its_thumbnails_and_captions(
    browser: Browser, api_url: str, client: httpx.Client, media_server: str, fake_vlm: Any
) -> None:
    job_id = client.post(
        "/v2/media/categories",
        json={"media_url": f"{media_server}/sample.mp4", "use_scenes": True, "max_frames": 6},
    ).json()["job_id"]
    job = poll_job(client, job_id, until=is_terminal)
    assert job["status"] == "COMPLETED"
    frames = job["results"]["frames"]

    page = browser.new_page(viewport={"width": 1200, "height": 900})
    page.goto(share(client, api_url, job_id), wait_until="load")
    # The pictures load lazily, as they come into view.
    for picture in page.locator("article.frame img").all():
        picture.scroll_into_view_if_needed()
    page.wait_for_function(
        "[...document.querySelectorAll('article.frame img')]"
        ".every(i => i.complete && i.naturalWidth > 0)",
        timeout=15_000,
    )
    images = page.evaluate(
        "[...document.querySelectorAll('article.frame img')]"
        ".map(i => ({complete: i.complete, width: i.naturalWidth, height: i.naturalHeight}))"
    )
    assert len(images) == len(frames)
    assert all(i["complete"] and i["width"] == 240 and i["height"] > 0 for i in images), images
    for frame in frames:
        assert page.locator(f"#frame-{frame['index']} .caption").inner_text() == frame["caption"]
        assert page.locator(f"#frame-{frame['index']} .caption").is_visible()
    assert page.locator(".timeline a").count() == len(frames)
    assert page.locator("#summary").is_visible()
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "report-completed.png"), full_page=True)
    page.close()


def test_a_running_jobs_report_updates_live_and_turns_into_the_result(
    browser: Browser, api_url: str, client: httpx.Client, media_server: str, fake_vlm: Any
) -> None:
    fake_vlm.delay = 0.4
    job_id = client.post(
        "/v2/media/categories", json={"media_url": f"{media_server}/sample.mp4", "max_frames": 6}
    ).json()["job_id"]
    page = browser.new_page()
    page.goto(share(client, api_url, job_id), wait_until="load")
    first = page.locator("#percent").inner_text()
    assert first != "100%"
    # Without any reload by the test, the page follows the job and ends on its result.
    page.locator(".status.COMPLETED").wait_for(timeout=60_000)
    assert page.locator("#percent").inner_text() == "100%"
    assert page.locator("article.frame").count() == 6
    page.screenshot(path=str(ARTIFACTS / "report-live.png"), full_page=True)
    page.close()


def test_the_reports_search_box_lists_matches_and_jumps_to_them(
    browser: Browser, api_url: str, client: httpx.Client, media_server: str, fake_vlm: Any
) -> None:
    job_id = client.post(
        "/v2/media/categories", json={"media_url": f"{media_server}/sample.mp4", "max_frames": 4}
    ).json()["job_id"]
    job = poll_job(client, job_id, until=is_terminal)
    assert job["status"] == "COMPLETED"
    frames = job["results"]["frames"]
    colour = frames[-1]["caption"].split()[1]  # the fake model's "A <colour> background ..."
    with_colour = [f for f in frames if colour in f["caption"]]

    page = browser.new_page()
    page.goto(share(client, api_url, job_id), wait_until="load")
    page.fill("#find-q", "background")
    assert page.locator("#find-hits li").count() == len(frames)
    assert page.locator("article.frame.hit").count() == len(frames)
    page.fill("#find-q", f'"{colour} background"')
    assert page.locator("#find-hits li").count() == len(with_colour)
    page.fill("#find-q", f"background -{colour}")
    assert page.locator("#find-hits li").count() == len(frames) - len(with_colour)
    page.fill("#find-q", f"{colour} or zebra")
    assert page.locator("#find-hits li").count() == len(with_colour)
    page.press("#find-q", "Enter")  # jumps to the first match
    assert page.evaluate("location.hash") == f"#frame-{with_colour[0]['index']}"
    page.fill("#find-q", "zebra")
    assert page.locator("#find-hits li").count() == 0
    assert page.locator("#find-count").inner_text() == "nothing found"
    page.close()
