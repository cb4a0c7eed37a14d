"""End to end through a real worker: submit over HTTP, process, poll to a terminal state."""

from __future__ import annotations

import itertools
import uuid
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

from db import jobs as job_repo
from scenecap.cli.sample import DEFAULT_SCENES, cut_times
from scenecap.core.enums import utcnow
from scenecap.core.settings import Settings
from tests.conftest import is_terminal, poll_job, wait_for
from worker.pipeline.plan import frame_count, plan_even

pytestmark = pytest.mark.usefixtures("worker")
SAMPLE_SECONDS = sum(scene.seconds for scene in DEFAULT_SCENES)


def colour_at(timestamp: float) -> str:
    """The sample video's background colour at a time."""
    index = sum(1 for cut in cut_times(DEFAULT_SCENES) if timestamp >= cut)
    return DEFAULT_SCENES[index].colour


def submit(client: httpx.Client, **body: Any) -> str:
    response = client.post("/v2/media/categories", json=body)
    assert response.status_code == 202, response.text
    return str(response.json()["job_id"])


class TestVideoJob:
    def test_job_completes_with_results_that_match_the_frames(
        self, client: httpx.Client, media_server: str, fake_vlm: Any, settings: Settings
    ) -> None:
        fake_vlm.delay = 0.05
        job_id = submit(client, media_url=f"{media_server}/sample.mp4", job_tag="e2e")
        seen: list[tuple[str, int]] = []

        def record(job: dict[str, Any]) -> bool:
            seen.append((job["status"], job["percent_complete"]))
            return is_terminal(job)

        job = poll_job(client, job_id, until=record)
        assert job["status"] == "COMPLETED", job["error"]
        percents = [percent for _status, percent in seen]
        assert percents == sorted(percents), "percent_complete must never decrease"
        assert all(status == "COMPLETED" for status, percent in seen if percent == 100)
        assert any(0 < percent < 100 for percent in percents), "progress was never seen moving"

        expected = plan_even(
            SAMPLE_SECONDS, frame_count(60, settings.frame_budget), settings.min_frame_gap_seconds
        )
        frames = job["results"]["frames"]
        assert [f["index"] for f in frames] == list(range(len(expected)))
        for frame, planned in zip(frames, expected, strict=True):
            assert abs(frame["timestamp"] - planned.time) < 1 / 30 + 1e-3
            assert frame["tags"][0] == colour_at(frame["timestamp"]), frame
        assert len(fake_vlm.image_requests()) == len(expected)

        tags = {item["name"]: item for item in job["results"]["tags"]}
        assert tags["square"]["count"] == len(expected), "plural tags are normalised and merged"
        red_times = [f["timestamp"] for f in frames if colour_at(f["timestamp"]) == "red"]
        assert tags["red"]["timestamps"] == red_times
        assert job["results"]["description"] == f"A video summarised from {len(expected)} captions."
        assert job["stage"] == "done" and job["percent_complete"] == 100
        assert job["media"]["duration"] == SAMPLE_SECONDS and job["media"]["width"] == 640
        assert job["usage"]["frames"] == len(expected) and job["usage"]["model"] == "fake-vlm"
        assert job["usage"]["total_tokens"] > 0
        assert job["completed_at"] >= job["started_at"] >= job["created_at"]

    def test_only_requested_metadata_types_appear(
        self, client: httpx.Client, media_server: str, fake_vlm: Any
    ) -> None:
        job_id = submit(
            client, media_url=f"{media_server}/sample.mp4", metadata=["tags"], max_frames=3
        )
        job = poll_job(client, job_id, until=is_terminal)
        assert set(job["results"]) == {"description", "tags", "frames"}
        assert set(job["results"]["frames"][0]) == {"index", "timestamp", "caption", "tags"}
        assert len(fake_vlm.image_requests()) == 3

    def test_scene_mode_takes_one_frame_per_scene(
        self, client: httpx.Client, media_server: str, fake_vlm: Any
    ) -> None:
        job_id = submit(client, media_url=f"{media_server}/sample.mp4", use_scenes=True)
        job = poll_job(client, job_id, until=is_terminal)
        assert job["status"] == "COMPLETED", job["error"]
        frames = job["results"]["frames"]
        bounds = [0.0, *cut_times(DEFAULT_SCENES), SAMPLE_SECONDS]
        assert [(f["scene_start"], f["scene_end"]) for f in frames] == list(
            itertools.pairwise(bounds)
        )
        assert [f["scene"] for f in frames] == [f"{s.colour} backdrop" for s in DEFAULT_SCENES]

    def test_cancelling_a_running_job_stops_the_worker_at_its_next_checkpoint(
        self, client: httpx.Client, media_server: str, fake_vlm: Any, worker_log: Path
    ) -> None:
        fake_vlm.delay = 0.4
        job_id = submit(client, media_url=f"{media_server}/sample.mp4")
        wait_for(lambda: len(fake_vlm.image_requests()) >= 2, timeout=60, what="captioning")
        response = client.delete(f"/v2/media/categories/{job_id}")
        assert response.status_code == 200 and response.json()["status"] == "CANCELLED"
        assert "downloading" in response.json()["timings"]  # the stages it went through
        sent_at_cancel = len(fake_vlm.requests) + fake_vlm.in_flight
        wait_for(
            lambda: f"job {job_id} was cancelled" in worker_log.read_text(),
            timeout=30,
            what="the worker to stop",
        )
        job = client.get(f"/v2/media/categories/{job_id}").json()
        assert job["status"] == "CANCELLED" and job["results"] is None
        assert job["timings"]["captioning"] > 0, "the stage it stopped in has its time too"
        # In-flight requests may finish; no new frame is sent after the checkpoint.
        assert len(fake_vlm.requests) <= sent_at_cancel + 4
        assert len(fake_vlm.requests) < 24


class TestVisionModel:
    def test_frames_are_captioned_concurrently_up_to_the_limit(
        self, client: httpx.Client, media_server: str, fake_vlm: Any, settings: Settings
    ) -> None:
        # Long enough that all requests of a round overlap even on a loaded machine (1 s once
        # fell short while the whole suite ran on two cores).
        fake_vlm.delay = 2.0
        job = poll_job(
            client,
            submit(client, media_url=f"{media_server}/sample.mp4", max_frames=12),
            until=is_terminal,
        )
        assert job["status"] == "COMPLETED"
        # Only this job's requests (each prompt names its frame's time), whatever else ran.
        times = {f"at {frame['timestamp']:.2f} s" for frame in job["results"]["frames"]}
        ours = [
            r
            for r in fake_vlm.image_requests()
            if any(t in str(r.body["messages"][1]["content"]) for t in times)
        ]
        assert len(ours) == 12
        edges = sorted([(r.started, 1) for r in ours] + [(r.finished, -1) for r in ours])
        overlap = peak = 0
        for _at, step in edges:
            overlap += step
            peak = max(peak, overlap)
        spans = [(round(r.started % 100, 2), round(r.finished % 100, 2)) for r in ours]
        assert peak == settings.vlm_max_concurrency, sorted(spans)

    def test_unparseable_answers_keep_their_caption_and_are_marked(
        self, client: httpx.Client, media_server: str, fake_vlm: Any
    ) -> None:
        fake_vlm.malformed = True
        job = poll_job(
            client,
            submit(client, media_url=f"{media_server}/sample.mp4", max_frames=2),
            until=is_terminal,
        )
        assert job["status"] == "COMPLETED", "one odd answer never fails a job"
        for frame in job["results"]["frames"]:
            assert frame["metadata_unparsed"] is True
            assert frame["caption"].startswith("Sure! The frame is mostly")
        assert job["results"]["tags"] == []

    def test_a_server_without_json_schema_support_is_parsed_leniently(
        self, client: httpx.Client, media_server: str, fake_vlm: Any
    ) -> None:
        fake_vlm.refuse_response_format = True
        job = poll_job(
            client,
            submit(client, media_url=f"{media_server}/sample.mp4", max_frames=2),
            until=is_terminal,
        )
        assert job["status"] == "COMPLETED", job["error"]
        for frame in job["results"]["frames"]:
            assert frame["tags"] == [colour_at(frame["timestamp"]), "squares"]
        assert all("response_format" not in r.body for r in fake_vlm.image_requests())

    def test_a_server_that_ignores_response_format_is_parsed_leniently(
        self, client: httpx.Client, media_server: str, fake_vlm: Any
    ) -> None:
        fake_vlm.ignore_response_format = True
        job = poll_job(
            client,
            submit(client, media_url=f"{media_server}/sample.mp4", max_frames=2),
            until=is_terminal,
        )
        assert job["status"] == "COMPLETED", job["error"]
        for frame in job["results"]["frames"]:
            assert "metadata_unparsed" not in frame
            assert frame["tags"] == [colour_at(frame["timestamp"]), "squares"]
            assert frame["caption"].startswith(f"A {colour_at(frame['timestamp'])} background")


class TestFailures:
    @pytest.mark.parametrize("name", ["truncated.mp4"])
    def test_broken_video_fails_with_a_reason_and_the_worker_lives_on(
        self, client: httpx.Client, media_server: str, fake_vlm: Any, name: str
    ) -> None:
        job = poll_job(
            client, submit(client, media_url=f"{media_server}/{name}"), until=is_terminal
        )
        assert job["status"] == "FAILED"
        assert job["error"]["code"] == "MEDIA_UNREADABLE" and job["error"]["message"]
        assert job["results"] is None and job["percent_complete"] < 100
        after = poll_job(
            client,
            submit(client, media_url=f"{media_server}/sample.mp4", max_frames=2),
            until=is_terminal,
        )
        assert after["status"] == "COMPLETED"

    def test_no_temp_files_are_left_behind_whatever_happens(
        self, client: httpx.Client, media_server: str, fake_vlm: Any, worker_tmp: Path
    ) -> None:
        failed = submit(client, media_url=f"{media_server}/truncated.mp4")
        done = submit(client, media_url=f"{media_server}/sample.mp4", max_frames=2)
        for job_id in (failed, done):
            poll_job(client, job_id, until=is_terminal)
        # (pymp-* belongs to Celery's process pool, not to the pipeline)
        assert list(worker_tmp.glob("scenecap-*")) == []

    def test_vision_model_down_fails_the_job_with_a_clear_code(
        self, client: httpx.Client, media_server: str, fake_vlm: Any
    ) -> None:
        fake_vlm.fail_next, fake_vlm.fail_status = 1000, 503
        job = poll_job(
            client,
            submit(client, media_url=f"{media_server}/sample.mp4", max_frames=2),
            until=is_terminal,
        )
        assert job["status"] == "FAILED"
        assert job["error"]["code"] == "VISION_BACKEND_UNAVAILABLE"

    def test_a_passing_model_outage_is_retried_not_a_verdict(
        self, client: httpx.Client, media_server: str, fake_vlm: Any
    ) -> None:
        # Enough failures to use up every retry of the first attempt's calls, not more.
        fake_vlm.fail_next, fake_vlm.fail_status = 6, 503
        job = poll_job(
            client,
            submit(client, media_url=f"{media_server}/sample.mp4", max_frames=2),
            until=is_terminal,
        )
        assert job["status"] == "COMPLETED", job.get("error")
        assert fake_vlm.fail_next == 0 and len(job["results"]["frames"]) == 2

    def test_transient_model_errors_are_retried(
        self, client: httpx.Client, media_server: str, fake_vlm: Any
    ) -> None:
        fake_vlm.fail_next, fake_vlm.fail_status, fake_vlm.retry_after = 2, 429, "0"
        job = poll_job(
            client,
            submit(client, media_url=f"{media_server}/sample.mp4", max_frames=2),
            until=is_terminal,
        )
        assert job["status"] == "COMPLETED", job["error"]
        assert len(job["results"]["frames"]) == 2


class TestImages:
    @pytest.mark.parametrize("name", ["purple.jpg", "purple.png"])
    def test_image_is_answered_inline(
        self, client: httpx.Client, media_server: str, fake_vlm: Any, name: str
    ) -> None:
        response = client.post("/v2/media/categories", json={"media_url": f"{media_server}/{name}"})
        assert response.status_code == 200, response.text
        body = response.json()
        assert "job_id" not in body and body["media_type"] == "image"
        assert "purple" in body["caption"]
        assert body["metadata"]["tags"] == ["purple", "squares"]
        assert body["media"]["width"] == 320


class TestReaper:
    def test_pending_job_whose_message_was_lost_is_requeued(
        self, client: httpx.Client, media_server: str, session_factory: Any, fake_vlm: Any
    ) -> None:
        job_id = submit(client, media_url=f"{media_server}/sample.mp4", max_frames=1)
        poll_job(client, job_id, until=is_terminal)
        # A job stored long ago whose queue message never arrived (no enqueue at all).
        with session_factory.begin() as session:
            owner = job_repo.get_job(session, uuid.UUID(job_id))
            assert owner is not None
            lost = job_repo.create_job(
                session,
                api_key_id=owner.api_key_id,
                media_url=f"{media_server}/sample.mp4",
                media_type="video",
                requested_metadata=["tags"],
                max_frames=1,
                created_at=utcnow() - timedelta(minutes=5),
            )
            lost_id = str(lost.id)
        job = poll_job(client, lost_id, until=is_terminal, timeout=60)
        assert job["status"] == "COMPLETED"
