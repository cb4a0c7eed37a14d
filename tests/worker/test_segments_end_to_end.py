"""Segment mode end to end through the session's worker (docs/api.md, "Long videos").

The 80-second clip has eight 10-second scenes (red, green, blue, yellow, twice); the worker
splits scene detection into 20-second chunks and captions segments in tasks of three.
"""

from __future__ import annotations

import itertools
import math
import re
import uuid
from pathlib import Path
from typing import Any

import httpx
import pytest

from db import jobs as job_repo
from db import work
from db.work import ItemKind
from scenecap.core.settings import Settings
from tests.conftest import is_terminal, poll_job, wait_for
from tests.support.fake_vlm import RecordedRequest
from worker.pipeline.scenes import detect_scenes

pytestmark = pytest.mark.usefixtures("worker")
COLOURS = ["red", "green", "blue", "yellow"] * 2
ONE_FRAME = 1 / 30 + 1e-3
_LABEL = re.compile(r"^Frame at ([\d.]+) s:$")
_SPAN = re.compile(r"from ([\d.]+) s to ([\d.]+) s")


def colour_at(time: float) -> str:
    return COLOURS[min(7, int(time // 10))]


def submit(client: httpx.Client, **body: Any) -> str:
    response = client.post("/v2/media/categories", json=body)
    assert response.status_code == 202, response.text
    return str(response.json()["job_id"])


def segment_requests(fake_vlm: Any) -> list[RecordedRequest]:
    return [r for r in fake_vlm.image_requests() if _SPAN.search(_texts(r)[0])]


def _texts(request: RecordedRequest) -> list[str]:
    content = request.body["messages"][-1]["content"]
    return [p["text"] for p in content if p["type"] == "text"]


def labelled_times(request: RecordedRequest) -> list[float]:
    """The times written beside the images, checking each text label precedes its image."""
    content = request.body["messages"][-1]["content"]
    times = []
    for part, following in itertools.pairwise(content):
        found = _LABEL.match(part.get("text", "")) if part["type"] == "text" else None
        if found:
            assert following["type"] == "image_url", "a time label must precede its image"
            times.append(float(found.group(1)))
    assert len(times) == sum(1 for p in content if p["type"] == "image_url")
    return times


def span_of(request: RecordedRequest) -> tuple[float, float]:
    found = _SPAN.search(_texts(request)[0])
    assert found is not None
    return float(found.group(1)), float(found.group(2))


class TestSegmentJob:
    def test_every_stretch_is_captioned_with_several_frames_in_one_request(
        self, client: httpx.Client, media_server: str, fake_vlm: Any
    ) -> None:
        fake_vlm.delay = 0.05
        job_id = submit(
            client,
            media_url=f"{media_server}/long.mp4",
            segment_seconds=10,
            frames_per_segment=4,
        )
        seen: list[tuple[str, int, str]] = []

        def record(job: dict[str, Any]) -> bool:
            seen.append((job["status"], job["percent_complete"], job["stage"]))
            return is_terminal(job)

        job = poll_job(client, job_id, until=record)
        assert job["status"] == "COMPLETED", job["error"]
        percents = [percent for _status, percent, _stage in seen]
        assert percents == sorted(percents), "percent_complete must never decrease"
        assert all(status == "COMPLETED" for status, percent, _ in seen if percent == 100)
        assert job["segment_seconds"] == 10 and job["frames_per_segment"] == 4

        results = job["results"]
        assert results["frames"] == [] and results["segment_seconds"] == 10
        segments = results["segments"]
        assert [(s["index"], s["start"], s["end"]) for s in segments] == [
            (i, 10.0 * i, 10.0 * (i + 1)) for i in range(8)
        ]
        for segment in segments:
            times = segment["frame_timestamps"]
            assert len(times) == 4 and times == sorted(times)
            assert all(segment["start"] <= t < segment["end"] for t in times)
            assert segment["scene"] == f"{colour_at(segment['start'])} backdrop", segment
            assert segment["caption"].startswith("Frames in order:")

        # One request per segment, each holding its four frames in time order, each labelled.
        requests = sorted(segment_requests(fake_vlm), key=span_of)
        assert len(requests) == 8
        for request, segment in zip(requests, segments, strict=True):
            assert span_of(request) == (segment["start"], segment["end"])
            labels = labelled_times(request)
            assert labels == pytest.approx(segment["frame_timestamps"], abs=0.006)
            assert request.colours == [colour_at(t) for t in labels]

        # Merged labels use segment start times; chapters cover the segments in order.
        tags = {entry["name"]: entry for entry in results["tags"]}
        assert tags["red"]["timestamps"] == [0.0, 40.0]
        chapters = results["chapters"]
        assert chapters[0]["segments"][0] == 0 and chapters[-1]["segments"][1] == 7
        assert all(
            a["segments"][1] + 1 == b["segments"][0] for a, b in itertools.pairwise(chapters)
        )
        assert [c["title"] for c in chapters] == [f"The {c} part" for c in COLOURS]
        assert results["description"] == f"A video summarised from {len(chapters)} captions."
        assert job["usage"]["segments"] == 8 and job["usage"]["frames"] == 32

    def test_with_scenes_segments_follow_the_cuts_found_in_chunks(
        self,
        client: httpx.Client,
        media_server: str,
        media_dir: Path,
        fake_vlm: Any,
        session_factory: Any,
    ) -> None:
        job_id = submit(
            client,
            media_url=f"{media_server}/long.mp4",
            segment_seconds=4,
            frames_per_segment=2,
            use_scenes=True,
        )
        job = poll_job(client, job_id, until=is_terminal)
        assert job["status"] == "COMPLETED", job["error"]
        assert job_row(session_factory, job_id).chunks_total == 4, "detected in 20-second chunks"
        # The scenes of one pass, each split into equal parts no longer than 4 seconds.
        expected = []
        for scene in detect_scenes(media_dir / "long.mp4", 80.0):
            parts = math.ceil(scene.length / 4 - 1e-9)
            step = scene.length / parts
            expected += [
                (scene.start + i * step, scene.start + (i + 1) * step) for i in range(parts)
            ]
        segments = job["results"]["segments"]
        assert [(s["start"], s["end"]) for s in segments] == [
            pytest.approx(bounds, abs=1e-3) for bounds in expected
        ]
        assert len(segment_requests(fake_vlm)) == len(expected)

    def test_a_server_that_takes_one_image_gets_one_per_request(
        self, client: httpx.Client, media_server: str, fake_vlm: Any, session_factory: Any
    ) -> None:
        fake_vlm.max_images = 1
        job_id = submit(
            client, media_url=f"{media_server}/long.mp4", segment_seconds=20, frames_per_segment=4
        )
        job = poll_job(client, job_id, until=is_terminal)
        assert job["status"] == "COMPLETED", job["error"]
        assert all(len(r.colours) == 1 for r in segment_requests(fake_vlm))
        assert [len(s["frame_timestamps"]) for s in job["results"]["segments"]] == [1] * 4
        assert job_row(session_factory, job_id).image_cap == 1

    def test_cancel_reaches_every_task(
        self,
        client: httpx.Client,
        media_server: str,
        fake_vlm: Any,
        settings: Settings,
        session_factory: Any,
    ) -> None:
        fake_vlm.delay = 1.0
        job_id = submit(
            client, media_url=f"{media_server}/long.mp4", segment_seconds=2, frames_per_segment=1
        )
        # Cancelled while the first requests are in flight (a second each): before the first
        # tasks can finish and others start.
        wait_for(lambda: fake_vlm.in_flight > 0, timeout=60, what="a segment being captioned")
        assert client.delete(f"/v2/media/categories/{job_id}").status_code == 200
        job = poll_job(client, job_id, until=is_terminal)
        assert job["status"] == "CANCELLED"

        def settled() -> bool:
            items = _items(session_factory, job_id)
            return fake_vlm.in_flight == 0 and not any(i.status == "PROCESSING" for i in items)

        wait_for(settled, timeout=30, what="every task of the cancelled job to stop")
        # 40 segments in 14 tasks: the two running at the cancel finished what was in flight
        # (never cut off), and no other task sent anything.
        assert len(segment_requests(fake_vlm)) <= 2 * settings.segments_per_task
        assert any(i.status == "PENDING" for i in _items(session_factory, job_id))


def _items(session_factory: Any, job_id: str) -> list[Any]:
    with session_factory() as session:
        return work.items_of(session, uuid.UUID(job_id), ItemKind.SEGMENTS)


def job_row(session_factory: Any, job_id: str) -> Any:
    with session_factory() as session:
        return job_repo.get_job(session, uuid.UUID(job_id))
