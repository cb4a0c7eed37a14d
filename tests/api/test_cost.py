"""Cost controls (docs/api.md, "Cost controls"): captions reused for the same key only,
batches, token budgets that shrink the plan and hold, daily quotas, and usage."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest

from api.main import create_app
from db.keys import create_key
from scenecap.core.settings import Settings
from scenecap.core.tokens import least_budget
from scenecap.store import open_store, paths
from tests.api.test_categories import assert_error
from tests.conftest import client_for, is_terminal, poll_job, serve_app
from worker.job.budget import frames_that_fit, segments_within

pytestmark = pytest.mark.usefixtures("worker")


@pytest.fixture
def owner(session_factory: Any) -> tuple[uuid.UUID, str]:
    with session_factory.begin() as session:
        key, plaintext = create_key(session, f"cost-{uuid.uuid4().hex[:8]}")
        return key.id, plaintext


@contextmanager
def app_with(settings: Settings, key: str, **changes: Any) -> Iterator[httpx.Client]:
    """A client of the API built with some settings changed."""
    with (
        serve_app(create_app(settings.model_copy(update=changes))) as url,
        client_for(url, key) as c,
    ):
        yield c


def run_job(client: httpx.Client, body: dict[str, Any]) -> dict[str, Any]:
    response = client.post("/v2/media/categories", json=body)
    assert response.status_code in (200, 202), response.text
    job = poll_job(client, response.json()["job_id"], until=is_terminal)
    assert job["status"] == "COMPLETED", job["error"]
    return job


class TestReuse:
    def test_the_same_bytes_again_cost_no_model_call(
        self,
        api_url: str,
        owner: tuple[uuid.UUID, str],
        media_server: str,
        fake_vlm: Any,
        settings: Settings,
    ) -> None:
        body = {"media_url": f"{media_server}/sample.mp4", "max_frames": 3, "job_tag": "first"}
        with client_for(api_url, owner[1]) as client:
            first = run_job(client, body)
            calls = len(fake_vlm.requests)
            assert calls == 4  # three frames and the summary
            # Another name for the same bytes: a data: URI of them is the same media.
            again = run_job(client, {**body, "job_tag": "again"})
        assert len(fake_vlm.requests) == calls, "a reused job calls no model"
        assert again["results"] == first["results"]
        assert again["usage"]["reused_frames"] == 3 and again["usage"]["total_tokens"] == 0
        assert first["usage"].get("reused_frames") is None
        with client_for(api_url, owner[1]) as client:
            page = client.get(f"/v2/media/categories/{again['job_id']}/report").text
            assert "Reused: the captions of an earlier job" in page
            assert "Reused" not in client.get(f"/v2/media/categories/{first['job_id']}/report").text
        # Its own thumbnails, for its report: purging the first job takes nothing from it.
        store = open_store(settings)
        job_id = uuid.UUID(again["job_id"])
        for frame in again["results"]["frames"]:
            assert store.size(paths.thumbnail(job_id, frame["index"]))

    @pytest.mark.parametrize(
        "change",
        [
            {"model": "another-model"},
            {"max_frames": 2},
            {"use_scenes": True},
            {"metadata": ["tags"]},
            {"segment_seconds": 6, "frames_per_segment": 2},
        ],
        ids=["model", "frames", "scenes", "metadata", "segment-mode"],
    )
    def test_a_change_of_model_or_plan_is_a_miss(
        self,
        api_url: str,
        owner: tuple[uuid.UUID, str],
        media_server: str,
        fake_vlm: Any,
        change: dict[str, Any],
    ) -> None:
        body = {"media_url": f"{media_server}/sample.mp4", "max_frames": 3}
        with client_for(api_url, owner[1]) as client:
            run_job(client, body)
            calls = len(fake_vlm.requests)
            other = run_job(client, {**body, **change})
        assert len(fake_vlm.requests) > calls
        assert not other["usage"].get("reused_frames")

    def test_never_across_keys(
        self,
        api_url: str,
        owner: tuple[uuid.UUID, str],
        client: httpx.Client,
        media_server: str,
        fake_vlm: Any,
    ) -> None:
        body = {"media_url": f"{media_server}/sample.mp4", "max_frames": 3}
        with client_for(api_url, owner[1]) as mine:
            run_job(mine, body)
        calls = len(fake_vlm.requests)
        theirs = run_job(client, body)  # another key, the same bytes
        assert len(fake_vlm.requests) == calls + 4
        assert not theirs["usage"].get("reused_frames")

    def test_segments_are_reused_too(
        self, api_url: str, owner: tuple[uuid.UUID, str], media_server: str, fake_vlm: Any
    ) -> None:
        body = {"media_url": f"{media_server}/long.mp4", "segment_seconds": 20}
        with client_for(api_url, owner[1]) as client:
            first = run_job(client, body)
            calls = len(fake_vlm.requests)
            again = run_job(client, body)
        assert len(fake_vlm.requests) == calls
        assert again["results"]["chapters"] == first["results"]["chapters"]
        segments = len(first["results"]["segments"])
        assert again["usage"]["reused_segments"] == segments and segments > 1


class TestBatch:
    def test_each_item_succeeds_or_fails_on_its_own(
        self, client: httpx.Client, media_server: str, fake_vlm: Any
    ) -> None:
        requests = [
            {"media_url": f"{media_server}/sample.mp4", "max_frames": 1},
            {"media_url": f"{media_server}/sample.mp4", "max_frames": 99},
            {"media_url": "ftp://example.com/a.mp4"},
            {"nonsense": True},
        ]
        answer = client.post("/v2/media/categories/batch", json={"requests": requests})
        assert answer.status_code == 200, answer.text
        results = answer.json()["results"]
        assert [r["index"] for r in results] == [0, 1, 2, 3]
        assert [r["status"] for r in results] == [202, 422, 422, 422]
        assert results[0]["job_id"] and results[0]["error"] is None
        assert results[1]["error"]["code"] == "VALIDATION_ERROR"
        assert results[1]["error"]["details"]["errors"][0]["field"] == "max_frames"
        assert results[2]["error"]["code"] == "UNSUPPORTED_URL_SCHEME"
        assert results[3]["error"]["details"]["errors"][0]["field"] in ("media_url", "nonsense")
        job = poll_job(client, results[0]["job_id"], until=is_terminal)
        assert job["status"] == "COMPLETED"

    def test_one_idempotency_key_for_the_batch(
        self, client: httpx.Client, media_server: str, fake_vlm: Any
    ) -> None:
        requests = [
            {"media_url": f"{media_server}/sample.mp4", "max_frames": 1, "job_tag": str(i)}
            for i in range(3)
        ]
        headers = {"Idempotency-Key": "nightly-import"}
        url = "/v2/media/categories/batch"
        first = client.post(url, json={"requests": requests}, headers=headers).json()["results"]
        again = client.post(url, json={"requests": requests}, headers=headers).json()["results"]
        assert [r["job_id"] for r in again] == [r["job_id"] for r in first]
        assert [r["status"] for r in first] == [202] * 3
        assert [r["status"] for r in again] == [200] * 3
        other = client.post(url, json={"requests": requests[:2]}, headers=headers)
        assert_error(other, 409, "IDEMPOTENCY_KEY_REUSED")
        listed = client.get("/v2/media/categories", params={"limit": 100}).json()["data"]
        assert len(listed) == 3

    @pytest.mark.parametrize("count", [0, 101])
    def test_an_empty_or_oversized_batch_is_422(self, client: httpx.Client, count: int) -> None:
        requests = [{"media_url": "https://example.com/a.mp4"}] * count
        response = client.post("/v2/media/categories/batch", json={"requests": requests})
        assert_error(response, 422, "VALIDATION_ERROR")

    def test_the_rate_limit_and_the_active_job_cap_count_each_item(
        self, settings: Settings, session_factory: Any, media_server: str, fake_vlm: Any
    ) -> None:
        requests = [{"media_url": f"{media_server}/sample.mp4", "max_frames": 1}] * 5
        with session_factory.begin() as session:
            _limited, limited_key = create_key(session, "batch-limited")
            _capped, capped_key = create_key(session, "batch-capped")

        def outcomes(client: httpx.Client, batch: list[dict[str, Any]]) -> list[Any]:
            answer = client.post("/v2/media/categories/batch", json={"requests": batch})
            return [
                r["error"]["code"] if r["error"] else r["status"] for r in answer.json()["results"]
            ]

        with app_with(settings, limited_key, rate_limit_per_minute=3) as limited:
            assert outcomes(limited, requests) == [202, 202, 202, "RATE_LIMITED", "RATE_LIMITED"]
        with app_with(settings, capped_key, max_active_jobs_per_key=1) as capped:
            assert outcomes(capped, requests[:2]) == [202, "TOO_MANY_ACTIVE_JOBS"]


class TestBudget:
    def test_the_plan_shrinks_to_the_budget_and_the_model_reports_no_more(
        self, client: httpx.Client, media_server: str, fake_vlm: Any, settings: Settings
    ) -> None:
        cap = 8000
        body = {"media_url": f"{media_server}/sample.mp4", "max_total_tokens": cap}
        job = run_job(client, body)
        frames = job["results"]["frames"]
        assert 1 <= len(frames) < 60
        reported = sum(r.prompt_tokens for r in fake_vlm.requests)
        assert reported == job["usage"]["prompt_tokens"]
        assert job["usage"]["total_tokens"] <= cap
        assert "partial" not in job["results"]

    def test_a_model_that_overruns_its_estimates_is_stopped(
        self, client: httpx.Client, media_server: str, fake_vlm: Any
    ) -> None:
        fake_vlm.usage_scale = 4.0
        body = {"media_url": f"{media_server}/sample.mp4", "max_total_tokens": 8000}
        job = run_job(client, body)
        assert job["results"]["partial"] is True
        page = client.get(f"/v2/media/categories/{job['job_id']}/report").text
        assert "Partial: the token budget ran out" in page
        fake_vlm.usage_scale = 1.0
        planned = len(run_plan(client, media_server, 8000)["results"]["frames"])
        assert len(job["results"]["frames"]) < planned

    def test_a_budget_below_one_frame_is_422_and_below_one_segment_fails_the_job(
        self, client: httpx.Client, settings: Settings, media_server: str, fake_vlm: Any
    ) -> None:
        least = least_budget(settings, heard=False)
        small = {"media_url": f"{media_server}/long.mp4", "max_total_tokens": least - 1}
        response = client.post("/v2/media/categories", json=small)
        error = assert_error(response, 422, "VALIDATION_ERROR")
        assert error["details"] == {"field": "max_total_tokens", "least": least}
        segments = {**small, "max_total_tokens": least, "segment_seconds": 10}
        job_id = client.post("/v2/media/categories", json=segments).json()["job_id"]
        job = poll_job(client, job_id, until=is_terminal)
        assert job["status"] == "FAILED" and job["error"]["code"] == "BUDGET_TOO_SMALL"
        assert fake_vlm.requests == []

    def test_segments_widen_to_the_budget_and_an_overrun_stops_them(
        self, client: httpx.Client, settings: Settings, media_server: str, fake_vlm: Any
    ) -> None:
        cap, metadata = 30_000, ("categories", "participants", "actions", "scene", "tags")
        count, pixels = frames_that_fit(settings, metadata, 4)
        most = segments_within(settings, cap, metadata, count, pixels, heard=False)
        body = {"media_url": f"{media_server}/long.mp4", "segment_seconds": 2}
        job = run_job(client, {**body, "max_total_tokens": cap})
        segments = job["results"]["segments"]
        assert 1 <= len(segments) <= most < 40  # 40 two-second segments without the budget
        assert job["results"]["chapters"] and "partial" not in job["results"]
        assert sum(r.prompt_tokens for r in fake_vlm.requests) == job["usage"]["prompt_tokens"]
        assert job["usage"]["total_tokens"] <= cap

        fake_vlm.requests.clear()
        fake_vlm.usage_scale = 20.0  # a model that reports far more than was estimated
        over = run_job(client, {**body, "max_total_tokens": cap, "frames_per_segment": 3})
        assert over["results"]["partial"] is True
        assert over["results"]["description"] == ""  # no room left to summarise with the model
        assert over["results"]["chapters"], "chapters where the labels change, made without it"
        # Three frames a segment cost less than four: the plan may hold a few more segments.
        three, pixels = frames_that_fit(settings, metadata, 3)
        most = segments_within(settings, cap, metadata, three, pixels, heard=False)
        assert len(fake_vlm.requests) == len(over["results"]["segments"]) <= most


def run_plan(client: httpx.Client, media_server: str, cap: int) -> dict[str, Any]:
    """The same budgeted job with a model that reports what it counts (max_frames differs,
    so it is not a reuse of the overrun job)."""
    body = {"media_url": f"{media_server}/sample.mp4", "max_total_tokens": cap, "max_frames": 59}
    return run_job(client, body)


class TestQuotaAndUsage:
    def test_past_its_daily_tokens_a_key_gets_429_until_midnight(
        self,
        api_url: str,
        session_factory: Any,
        media_server: str,
        fake_vlm: Any,
        settings: Settings,
    ) -> None:
        # Room for the least a job costs, and no more: one job, then the quota is spent.
        least = least_budget(settings, heard=False)
        with session_factory.begin() as session:
            _key, plaintext = create_key(session, "quota", tokens_per_day=least)
        body = {"media_url": f"{media_server}/sample.mp4", "max_frames": 2}
        with client_for(api_url, plaintext) as client:
            job = run_job(client, body)  # its plan shrank to what the quota held for it
            assert 0 < job["usage"]["total_tokens"] <= least
            refused = client.post("/v2/media/categories", json=body)
            error = assert_error(refused, 429, "QUOTA_EXCEEDED")
            midnight = (datetime.now(UTC) + timedelta(days=1)).replace(
                hour=0, minute=0, second=0, microsecond=0
            )
            assert datetime.fromisoformat(error["details"]["resets_at"]) == midnight
            assert error["details"]["used"] == job["usage"]["total_tokens"]
            wait = int(refused.headers["Retry-After"])
            assert 0 < wait <= 86400
            batch = client.post("/v2/media/categories/batch", json={"requests": [body]})
            assert batch.json()["results"][0]["error"]["code"] == "QUOTA_EXCEEDED"

    def test_usage_sums_the_jobs_per_day(
        self, api_url: str, owner: tuple[uuid.UUID, str], media_server: str, fake_vlm: Any
    ) -> None:
        with client_for(api_url, owner[1]) as client:
            first = run_job(client, {"media_url": f"{media_server}/sample.mp4", "max_frames": 2})
            second = run_job(client, {"media_url": f"{media_server}/sample.mp4", "max_frames": 2})
            report = client.get("/v2/usage").json()
            today = datetime.now(UTC).date().isoformat()
            assert report["to"] == today
            assert report["from"] == (datetime.now(UTC).date() - timedelta(days=29)).isoformat()
            assert report["jobs"] == {"COMPLETED": 2}
            # Frames the model captioned (the ledger's), and those reused without a call.
            assert report["frames"] == 2 and report["reused_frames"] == 2
            assert report["total_tokens"] == first["usage"]["total_tokens"]
            assert report["media_seconds"] == pytest.approx(2 * first["media"]["duration"])
            assert second["usage"]["total_tokens"] == 0
            [day] = report["days"]
            assert day["date"] == today and day["jobs"] == {"COMPLETED": 2}
            assert (
                client.get("/v2/usage", params={"from": "2020-01-01", "to": "2020-01-31"}).json()[
                    "days"
                ]
                == []
            )
            for params in (
                {"from": "yesterday"},
                {"from": today, "to": "2020-01-01"},
                {"from": "2020-01-01"},
            ):
                assert_error(client.get("/v2/usage", params=params), 422, "VALIDATION_ERROR")

    def test_metrics_carry_the_figures_by_key_name(
        self,
        api_url: str,
        settings: Settings,
        session_factory: Any,
        media_server: str,
        fake_vlm: Any,
    ) -> None:
        name = f"metrics-{uuid.uuid4().hex[:6]}"
        with session_factory.begin() as session:
            _key, plaintext = create_key(session, name)
        with client_for(api_url, plaintext) as client:
            job = run_job(client, {"media_url": f"{media_server}/sample.mp4", "max_frames": 2})
        with app_with(settings, plaintext, metrics_cache_seconds=0) as fresh:
            text = fresh.get("/metrics").text
        line = f'scenecap_key_usage{{figure="total_tokens",key="{name}"}}'
        [value] = [row.split()[-1] for row in text.splitlines() if row.startswith(line)]
        assert float(value) == job["usage"]["total_tokens"]
