"""Exports (docs/api.md, "Exports"): a completed job's captions, chapters, speech and
on-screen text as timed cues, in JSON, CSV, SubRip and WebVTT, through the API and
`scenecap export`, `get` and `list`."""

from __future__ import annotations

import csv
import io
import json
import re
from collections.abc import Callable
from typing import Any

import httpx
import pytest

from tests.api.test_categories import assert_error
from tests.conftest import SPOKEN, is_terminal, poll_job
from tests.scenecap.test_cli_tools import clean_env, run
from tests.worker.test_jobs_end_to_end import submit

pytestmark = pytest.mark.usefixtures("worker")

SRT_CUE = re.compile(
    r"(\d+)\n(\d\d):(\d\d):(\d\d),(\d{3}) --> (\d\d):(\d\d):(\d\d),(\d{3})\n([^\n]+)\n"
)


def seconds(h: str, m: str, s: str, ms: str) -> float:
    return int(h) * 3600 + int(m) * 60 + int(s) + int(ms) / 1000


@pytest.fixture
def spoken_job(
    client: httpx.Client, media_server: str, fake_vlm: Any, fake_asr: Any
) -> dict[str, Any]:
    job_id = submit(
        client,
        media_url=f"{media_server}/spoken.mp4",
        max_frames=4,
        metadata=["tags", "transcript"],
    )
    job = poll_job(client, job_id, until=is_terminal)
    assert job["status"] == "COMPLETED", job["error"]
    return job


def test_json_has_every_caption_and_spoken_segment_in_time_order(
    client: httpx.Client, spoken_job: dict[str, Any]
) -> None:
    response = client.get(f"/v2/media/categories/{spoken_job['job_id']}/export")
    assert response.status_code == 200 and response.headers["content-type"] == "application/json"
    assert "attachment" in response.headers["content-disposition"]
    cues = response.json()["cues"]
    frames = spoken_job["results"]["frames"]
    captions = [c for c in cues if c["kind"] == "caption"]
    assert [c["start"] for c in captions] == [f["timestamp"] for f in frames]
    # Each caption lasts until the next frame; the last one to the end of the video.
    assert [c["end"] for c in captions[:-1]] == [f["timestamp"] for f in frames[1:]]
    assert captions[-1]["end"] == pytest.approx(spoken_job["media"]["duration"])
    speech = [c for c in cues if c["kind"] == "speech"]
    assert len(speech) == len(SPOKEN)
    assert [c["start"] for c in cues] == sorted(c["start"] for c in cues)


def test_srt_vtt_and_csv_carry_the_same_cues(
    client: httpx.Client, spoken_job: dict[str, Any]
) -> None:
    path = f"/v2/media/categories/{spoken_job['job_id']}/export"
    cues = client.get(path).json()["cues"]
    srt = client.get(path, params={"format": "srt"})
    assert srt.headers["content-type"].startswith("application/x-subrip")
    parsed = SRT_CUE.findall(srt.text)
    assert [int(p[0]) for p in parsed] == list(range(1, len(cues) + 1))
    for found, cue in zip(parsed, cues, strict=True):
        assert seconds(*found[1:5]) == pytest.approx(cue["start"], abs=1e-3)
        assert seconds(*found[5:9]) == pytest.approx(cue["end"], abs=1e-3)
        assert found[9].endswith(" ".join(cue["text"].split()))
        assert found[9].startswith("[speech] ") == (cue["kind"] == "speech")
    vtt = client.get(path, params={"format": "vtt"})
    assert vtt.headers["content-type"].startswith("text/vtt")
    assert vtt.text.startswith("WEBVTT\n\n")
    assert vtt.text.count(" --> ") == len(cues) and "," not in vtt.text.split("\n")[3][:12]
    rows = list(csv.DictReader(io.StringIO(client.get(path, params={"format": "csv"}).text)))
    assert [(float(r["start"]), r["kind"], r["text"]) for r in rows] == [
        (pytest.approx(c["start"], abs=1e-3), c["kind"], c["text"]) for c in cues
    ]
    only_speech = client.get(path, params={"format": "json", "kind": "speech"}).json()["cues"]
    assert only_speech == [c for c in cues if c["kind"] == "speech"]


def test_only_a_completed_job_exports_and_formats_are_checked(
    client: httpx.Client, media_server: str, fake_vlm: Any, spoken_job: dict[str, Any]
) -> None:
    fake_vlm.delay = 0.5
    running = submit(client, media_url=f"{media_server}/sample.mp4", max_frames=10)
    assert_error(client.get(f"/v2/media/categories/{running}/export"), 409, "JOB_NOT_FINISHED")
    path = f"/v2/media/categories/{spoken_job['job_id']}/export"
    assert_error(client.get(path, params={"format": "docx"}), 422, "VALIDATION_ERROR")
    assert_error(client.get(path, params={"kind": "smell"}), 422, "VALIDATION_ERROR")


def test_the_export_get_and_list_commands(
    api_url: str, new_key: Callable[[], str], media_server: str, fake_vlm: Any, tmp_path: Any
) -> None:
    env = clean_env(SCENECAP_API_URL=api_url, SCENECAP_API_KEY=new_key())
    done = run(
        "submit", f"{media_server}/sample.mp4", "--wait", "--max-frames", "2", "--json", env=env
    )
    job = json.loads(done.stdout)
    srt = tmp_path / "captions.srt"
    exported = run("export", job["job_id"], "--output", str(srt), env=env)
    assert exported.returncode == 0, exported.stderr
    assert len(SRT_CUE.findall(srt.read_text())) == 2
    vtt = run("export", job["job_id"], "--format", "vtt", env=env)
    assert vtt.stdout.startswith("WEBVTT")
    shown = run("get", job["job_id"], env=env)
    assert shown.returncode == 0 and f"{media_server}/sample.mp4" in shown.stdout
    listed = run("list", "--status", "COMPLETED", env=env)
    assert listed.returncode == 0 and listed.stdout.startswith(job["job_id"])
    page = tmp_path / "report.html"
    written = run("report", job["job_id"], "-o", str(page), env=env)
    assert written.returncode == 0 and written.stdout.strip() == page.as_uri()
    assert page.read_text().count("src='data:image/jpeg;base64,") == 2
    shared = run("report", job["job_id"], "--share", "--expires-in", "600", env=env)
    assert shared.returncode == 0 and shared.stdout.startswith(api_url)
    opened = httpx.get(shared.stdout.strip())  # no key: the link's token
    assert opened.status_code == 200 and "<!doctype html>" in opened.text
    missing = run("export", "00000000-0000-0000-0000-000000000000", env=env)
    assert missing.returncode == 1
    assert missing.stderr.startswith("scenecap: error: JOB_NOT_FOUND: ")


def test_the_list_filters_by_job_tag(
    client: httpx.Client, api_url: str, media_server: str, fake_vlm: Any
) -> None:
    tagged = submit(client, media_url=f"{media_server}/sample.mp4", max_frames=1, job_tag="a-1")
    submit(client, media_url=f"{media_server}/sample.mp4", max_frames=1, job_tag="b-2")
    page = client.get("/v2/media/categories", params={"job_tag": "a-1"}).json()
    assert [job["job_id"] for job in page["data"]] == [tagged]
    env = clean_env(
        SCENECAP_API_URL=api_url,
        SCENECAP_API_KEY=client.headers["authorization"].removeprefix("Bearer "),
    )
    listed = run("list", "--tag", "a-1", env=env)
    assert listed.returncode == 0 and listed.stdout.split()[0] == tagged
    assert "[a-1]" in listed.stdout and "b-2" not in listed.stdout
