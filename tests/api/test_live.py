"""Live progress (SSE), the HTML report and signed share links."""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import Callable
from html import escape
from typing import Any

import httpx
import pytest

from api.services.links import new_token
from db.keys import find_active_key, hash_key
from scenecap.core.settings import Settings
from tests.conftest import app_client, client_for, is_terminal, poll_job

pytestmark = pytest.mark.usefixtures("worker")


def read_events(http: httpx.Client, url: str) -> list[tuple[str, dict[str, Any]]]:
    """Read a whole event stream (it must end by itself after the terminal event)."""
    events: list[tuple[str, dict[str, Any]]] = []
    name = "message"
    with http.stream("GET", url, timeout=httpx.Timeout(60)) as response:
        assert response.status_code == 200, response.read()
        assert response.headers["content-type"].startswith("text/event-stream")
        for line in response.iter_lines():
            if line.startswith("event:"):
                name = line[6:].strip()
            elif line.startswith("data:"):
                events.append((name, json.loads(line[5:])))
    return events


def submit(client: httpx.Client, media_server: str, **fields: Any) -> str:
    body = {"media_url": f"{media_server}/sample.mp4", "max_frames": 4, **fields}
    response = client.post("/v2/media/categories", json=body)
    assert response.status_code == 202, response.text
    return str(response.json()["job_id"])


def test_events_stream_progress_then_exactly_one_terminal_event(
    client: httpx.Client, media_server: str, fake_vlm: Any
) -> None:
    fake_vlm.delay = 0.3  # slow frames, so the stream sees the job move
    job_id = submit(client, media_server)
    events = read_events(client, f"/v2/media/categories/{job_id}/events")

    names = [name for name, _data in events]
    assert names[-1] == "completed" and names.count("completed") == 1
    assert set(names[:-1]) == {"progress"}
    progress = [data for name, data in events if name == "progress"]
    percents = [data["percent_complete"] for data in progress]
    assert percents == sorted(percents), "percent_complete went down"
    assert len(set(percents)) >= 3, f"too few progress steps seen: {percents}"
    assert "captioning" in {data["stage"] for data in progress}
    final = events[-1][1]
    assert final["status"] == "COMPLETED" and final["percent_complete"] == 100
    assert len(final["results"]["frames"]) == 4
    assert set(final["timings"]) >= {"downloading", "extracting_frames", "captioning"}


def test_events_of_a_cancelled_job_end_with_cancelled(
    client: httpx.Client, media_server: str, fake_vlm: Any
) -> None:
    fake_vlm.delay = 1.0
    job_id = submit(client, media_server)
    poll_job(client, job_id, until=lambda job: job["stage"] == "captioning")
    assert client.delete(f"/v2/media/categories/{job_id}").status_code == 200
    events = read_events(client, f"/v2/media/categories/{job_id}/events")
    assert events[-1][0] == "cancelled"
    assert events[-1][1]["status"] == "CANCELLED"


def test_events_and_report_belong_to_the_owner(
    api_url: str, client: httpx.Client, other_client: httpx.Client, media_server: str
) -> None:
    job_id = submit(client, media_server, max_frames=1)
    for path in ("events", "report"):
        anonymous = httpx.get(f"{api_url}/v2/media/categories/{job_id}/{path}")
        assert anonymous.status_code == 401
        assert anonymous.json()["error"]["code"] == "UNAUTHENTICATED"
        stranger = other_client.get(f"/v2/media/categories/{job_id}/{path}")
        assert stranger.status_code == 404
        assert stranger.json()["error"]["code"] == "JOB_NOT_FOUND"


def test_report_shows_thumbnails_captions_and_merged_results(
    client: httpx.Client, media_server: str, fake_vlm: Any
) -> None:
    job_id = submit(client, media_server, use_scenes=True)
    job = poll_job(client, job_id, until=is_terminal)
    assert job["status"] == "COMPLETED"
    response = client.get(f"/v2/media/categories/{job_id}/report")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/html")
    page = response.text
    frames = job["results"]["frames"]
    thumbnails = re.findall(r"<img [^>]*loading='lazy' src='([^']+)'", page)
    assert len(thumbnails) == len(frames), "one lazy picture per frame, none inline"
    with httpx.Client(base_url=str(client.base_url)) as browser:  # as the page's <img> asks
        picture = browser.get(thumbnails[0].replace("&amp;", "&"))
    assert picture.status_code == 200 and picture.content.startswith(b"\xff\xd8")
    assert "immutable" in picture.headers["cache-control"]
    for frame in frames:
        assert frame["caption"].replace("'", "&#x27;") in page
    assert page.count("class='scene'") == len({f["scene_start"] for f in frames}) - 1
    for entry in job["results"]["categories"]:
        assert entry["name"] in page
    assert "EventSource" not in page, "a finished job's page need not follow events"


def test_a_segment_jobs_report_shows_segments_on_a_timeline_under_chapter_bands(
    client: httpx.Client, media_server: str, fake_vlm: Any
) -> None:
    job_id = submit(client, media_server, segment_seconds=3, frames_per_segment=2)
    job = poll_job(client, job_id, until=is_terminal)
    assert job["status"] == "COMPLETED", job["error"]
    page = client.get(f"/v2/media/categories/{job_id}/report").text
    segments, chapters = job["results"]["segments"], job["results"]["chapters"]
    assert len(segments) == 4 and page.count("class='segment'") == len(segments)
    thumbnails = re.findall(r"<img [^>]*loading='lazy' src='([^']+)'", page)
    assert len(thumbnails) == len(segments), "one thumbnail per segment"
    bands = re.search(r"<div class='chapters'[^>]*>(.*?)</div></div>", page)
    assert bands is not None
    assert [escape(c["title"]) for c in chapters] == re.findall(r">([^<>]+)</div>", bands.group(0))
    for segment in segments:
        assert escape(segment["caption"]) in page
    assert "<h2>Segments (4)</h2>" in page


def test_a_running_jobs_report_follows_its_events_with_a_token(
    api_url: str, client: httpx.Client, media_server: str, fake_vlm: Any
) -> None:
    fake_vlm.delay = 0.5
    job_id = submit(client, media_server)
    page = client.get(f"/v2/media/categories/{job_id}/report").text
    match = re.search(r'EventSource\("([^"]+)"\)', page)
    assert match, "a running job's page follows its event stream"
    # The page's stream works without the API key, as a browser's EventSource would call it.
    with httpx.Client(base_url=api_url) as browser:
        events = read_events(browser, match.group(1))
    assert events[-1][0] == "completed"


def test_share_links_open_the_report_without_the_key_until_they_expire(
    api_url: str,
    new_key: Callable[[], str],
    session_factory: Any,
    media_server: str,
    fake_vlm: Any,
    settings: Settings,
) -> None:
    key = new_key()
    with client_for(api_url, key) as client:
        job_id = submit(client, media_server, max_frames=1)
        other_job = submit(client, media_server, max_frames=1)
        poll_job(client, job_id, until=is_terminal)
        link = client.post(f"/v2/media/categories/{job_id}/share", json={"expires_in": 600})
        assert link.status_code == 200
        share = link.json()
    token = share["report_url"].split("token=")[1]
    report = f"/v2/media/categories/{job_id}/report"
    with session_factory() as session:
        owner = find_active_key(session, hash_key(key))
        assert owner is not None
    secret = settings.secret_key.get_secret_value().encode()  # type: ignore[union-attr]
    expired, _ = new_token(secret, owner.id, uuid.UUID(job_id), -1)
    tampered = token[:-2] + ("BB" if token.endswith("AA") else "AA")

    with httpx.Client(base_url=api_url) as anyone:
        assert anyone.get(share["report_url"]).status_code == 200
        assert read_events(anyone, share["events_url"])[-1][0] == "completed"
        assert anyone.get(report, params={"token": tampered}).status_code == 401
        refused = anyone.get(report, params={"token": expired})
        assert refused.status_code == 401
        assert "expired" in refused.json()["error"]["message"]
        # A job's token opens that job only.
        elsewhere = anyone.get(f"/v2/media/categories/{other_job}/report", params={"token": token})
        assert elsewhere.status_code == 401


def test_share_link_lifetime_is_validated(client: httpx.Client, media_server: str) -> None:
    job_id = submit(client, media_server, max_frames=1)
    response = client.post(f"/v2/media/categories/{job_id}/share", json={"expires_in": 5})
    assert response.status_code == 422
    assert response.json()["error"]["code"] == "VALIDATION_ERROR"


def test_share_links_are_absolute_where_the_public_base_url_is_set(
    settings: Settings, new_key: Callable[[], str], media_server: str
) -> None:
    changes = {"public_base_url": "https://media.example.com/scenecap"}
    with app_client(settings, new_key(), **changes) as (_app, client):
        job_id = submit(client, media_server, max_frames=1)
        link = client.post(f"/v2/media/categories/{job_id}/share").json()
    prefix = f"https://media.example.com/scenecap/v2/media/categories/{job_id}/"
    assert link["report_url"].startswith(prefix + "report?token=")
    assert link["events_url"].startswith(prefix + "events?token=")
    with pytest.raises(ValueError, match="public_base_url"):
        settings.model_validate(settings.model_dump() | {"public_base_url": "media.example.com"})
