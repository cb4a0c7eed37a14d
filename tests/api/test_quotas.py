"""Tenants' limits hold (docs/api.md, "Cost controls"): the spend ledger counts every model
call whatever becomes of its job, quotas and the active-jobs cap hold under concurrency, and
a purge leaves nothing behind, not even what a late worker writes."""

from __future__ import annotations

import base64
import uuid
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import func, select

from api.main import create_app
from db import spend
from db.keys import create_key
from db.models import JobFrame, JobStageTiming
from scenecap.core.enums import utcnow
from scenecap.core.settings import Settings
from scenecap.core.tokens import frame_cost, least_budget
from scenecap.store import open_store, paths
from tests.api.test_categories import assert_error
from tests.conftest import client_for, is_terminal, poll_job, serve_app, wait_for

pytestmark = pytest.mark.usefixtures("worker")


def key_with(session_factory: Any, tokens_per_day: int | None = None) -> tuple[uuid.UUID, str]:
    with session_factory.begin() as session:
        key, plaintext = create_key(session, "quota", tokens_per_day=tokens_per_day)
        return key.id, plaintext


def submit(client: httpx.Client, media_server: str, frames: int) -> str:
    body = {"media_url": f"{media_server}/sample.mp4", "max_frames": frames}
    response = client.post("/v2/media/categories", json=body)
    assert response.status_code == 202, response.text
    return str(response.json()["job_id"])


def purged(client: httpx.Client, job: str) -> bool:
    return client.delete(f"/v2/media/categories/{job}", params={"purge": True}).status_code == 204


def spent_today(session_factory: Any, key_id: uuid.UUID) -> int:
    today = utcnow().date()
    with session_factory() as session:
        return sum(row.total_tokens for row in spend.by_day(session, key_id, today, today))


def in_parallel(count: int, call: Any) -> list[httpx.Response]:
    with ThreadPoolExecutor(count) as pool:
        return list(pool.map(lambda _n: call(), range(count)))


def finish_all(client: httpx.Client, responses: list[httpx.Response]) -> list[dict[str, Any]]:
    return [
        poll_job(client, r.json()["job_id"], until=is_terminal)
        for r in responses
        if r.status_code == 202
    ]


class TestQuota:
    def test_parallel_submissions_never_pass_the_quota(
        self,
        api_url: str,
        session_factory: Any,
        media_server: str,
        fake_vlm: Any,
        settings: Settings,
    ) -> None:
        least = least_budget(settings, heard=False)
        key_id, plaintext = key_with(session_factory, tokens_per_day=3 * least)
        fake_vlm.delay = 0.5  # none ends before the others are submitted
        body = {"media_url": f"{media_server}/sample.mp4", "max_frames": 4}
        with client_for(api_url, plaintext) as client:
            answers = in_parallel(20, lambda: client.post("/v2/media/categories", json=body))
            codes = Counter(r.status_code for r in answers)
            assert codes == {202: 3, 429: 17}, codes
            assert {r.json()["error"]["code"] for r in answers if r.status_code == 429} == {
                "QUOTA_EXCEEDED"
            }
            done = finish_all(client, answers)
        assert all(job["status"] == "COMPLETED" for job in done), [j["error"] for j in done]
        assert 0 < spent_today(session_factory, key_id) <= 3 * least

    def test_a_batch_of_images_never_passes_the_quota(
        self,
        api_url: str,
        session_factory: Any,
        media_dir: Path,
        fake_vlm: Any,
        settings: Settings,
    ) -> None:
        image = (
            "data:image/jpeg;base64,"
            + base64.b64encode((media_dir / "purple.jpg").read_bytes()).decode()
        )
        quota = frame_cost(settings, heard=False) + 100  # one image's request, not two
        key_id, plaintext = key_with(session_factory, tokens_per_day=quota)
        batch = {"requests": [{"media_url": image} for _ in range(10)]}
        with client_for(api_url, plaintext) as client:
            results = client.post("/v2/media/categories/batch", json=batch).json()["results"]
            assert Counter(r["status"] for r in results) == {202: 1, 429: 9}
            [made] = [r["job_id"] for r in results if r["status"] == 202]
            assert poll_job(client, made, until=is_terminal)["status"] == "COMPLETED"
        assert 0 < spent_today(session_factory, key_id) <= quota

    def test_completions_are_under_the_quota_and_in_the_ledger(
        self,
        api_url: str,
        session_factory: Any,
        media_server: str,
        fake_vlm: Any,
    ) -> None:
        body = {
            "model": "fake-vlm",
            "messages": [
                {
                    "role": "user",
                    "content": [
                        {"type": "text", "text": "What colour?"},
                        {"type": "image_url", "image_url": {"url": f"{media_server}/purple.png"}},
                    ],
                }
            ],
        }
        _poor, plaintext = key_with(session_factory, tokens_per_day=100)
        with client_for(api_url, plaintext) as client:
            assert_error(client.post("/v2/media/completions", json=body), 429, "QUOTA_EXCEEDED")
        rich_id, plaintext = key_with(session_factory)
        with client_for(api_url, plaintext) as client:
            answer = client.post("/v2/media/completions", json=body)
            assert answer.status_code == 200, answer.text
            used = answer.json()["usage"]["total_tokens"]
            assert used > 0
            assert client.get("/v2/usage").json()["total_tokens"] == used
        assert spent_today(session_factory, rich_id) == used

    def test_questions_are_charged_and_under_the_quota(
        self,
        api_url: str,
        session_factory: Any,
        media_server: str,
        fake_vlm: Any,
        settings: Settings,
    ) -> None:
        key_id, plaintext = key_with(session_factory)
        body = {"media_url": f"{media_server}/sample.mp4", "max_frames": 2}
        with client_for(api_url, plaintext) as client:
            job = client.post("/v2/media/categories", json=body).json()["job_id"]
            job_tokens = poll_job(client, job, until=is_terminal)["usage"]["total_tokens"]
            answer = client.post(
                f"/v2/media/categories/{job}/ask", json={"question": "What colour is it?"}
            )
            assert answer.status_code == 200, answer.text
            asked = answer.json()["usage"]["total_tokens"]
            assert asked > 0
            assert client.get("/v2/usage").json()["total_tokens"] == job_tokens + asked
            # No room left for another question: the quota is what was spent.
            with session_factory.begin() as session:
                from db.keys import set_quota

                set_quota(session, key_id, job_tokens + asked)
            with app_of(settings) as url, client_for(url, plaintext) as fresh:  # no cached key
                refused = fresh.post(
                    f"/v2/media/categories/{job}/ask", json={"question": "And now?"}
                )
                assert_error(refused, 429, "QUOTA_EXCEEDED")
        assert spent_today(session_factory, key_id) == job_tokens + asked

    def test_a_purge_gives_no_spend_back(
        self, api_url: str, session_factory: Any, media_server: str, fake_vlm: Any
    ) -> None:
        key_id, plaintext = key_with(session_factory)
        with client_for(api_url, plaintext) as client:
            job = client.post(
                "/v2/media/categories",
                json={"media_url": f"{media_server}/sample.mp4", "max_frames": 2},
            ).json()["job_id"]
            used = poll_job(client, job, until=is_terminal)["usage"]["total_tokens"]
            assert (
                client.delete(f"/v2/media/categories/{job}", params={"purge": True}).status_code
                == 204
            )
            report = client.get("/v2/usage").json()
        assert report["total_tokens"] == used and report["jobs"] == {}
        assert spent_today(session_factory, key_id) == used

    def test_a_cancelled_jobs_captions_are_counted(
        self,
        api_url: str,
        session_factory: Any,
        media_server: str,
        fake_vlm: Any,
        worker_log: Path,
    ) -> None:
        key_id, plaintext = key_with(session_factory)
        fake_vlm.delay = 0.6
        with client_for(api_url, plaintext) as client:
            job = client.post(
                "/v2/media/categories",
                json={"media_url": f"{media_server}/sample.mp4", "max_frames": 12},
            ).json()["job_id"]
            job_id = uuid.UUID(job)

            def captioned() -> int:
                with session_factory() as session:
                    return int(
                        session.scalar(select(func.count()).where(JobFrame.job_id == job_id)) or 0
                    )

            wait_for(captioned, timeout=60, what="a first captioned frame")
            assert client.delete(f"/v2/media/categories/{job}").status_code == 200
            # Its requests in flight are answered and stored; then the worker stops.
            wait_for(
                lambda: f"job {job} was cancelled" in worker_log.read_text(),
                timeout=60,
                what="the worker to stop",
            )
            cancelled = client.get(f"/v2/media/categories/{job}").json()
        assert cancelled["status"] == "CANCELLED" and cancelled["usage"] is None
        with session_factory() as session:
            stored = session.scalar(
                select(func.sum(JobFrame.prompt_tokens + JobFrame.completion_tokens)).where(
                    JobFrame.job_id == job_id
                )
            )
        assert stored and spent_today(session_factory, key_id) == stored


@contextmanager
def app_of(settings: Settings, **changes: Any) -> Iterator[str]:
    with serve_app(create_app(settings.model_copy(update=changes))) as url:
        yield url


class TestActiveJobs:
    def test_parallel_submissions_and_batches_never_pass_the_cap(
        self,
        settings: Settings,
        session_factory: Any,
        media_server: str,
        fake_vlm: Any,
    ) -> None:
        fake_vlm.delay = 1.0
        body = {"media_url": f"{media_server}/sample.mp4", "max_frames": 4}
        with app_of(settings, max_active_jobs_per_key=5) as url:
            _id, plaintext = key_with(session_factory)
            with client_for(url, plaintext) as client:
                answers = in_parallel(30, lambda: client.post("/v2/media/categories", json=body))
                assert Counter(r.status_code for r in answers) == {202: 5, 429: 25}
            _id, plaintext = key_with(session_factory)
            batch = {"requests": [body] * 4}
            with client_for(url, plaintext) as client:
                pages = in_parallel(
                    3, lambda: client.post("/v2/media/categories/batch", json=batch)
                )
                statuses = Counter(r["status"] for p in pages for r in p.json()["results"])
                assert statuses == {202: 5, 429: 7}


class TestPurge:
    def test_a_purge_during_captioning_leaves_nothing_once_the_work_stops(
        self,
        client: httpx.Client,
        session_factory: Any,
        media_server: str,
        fake_vlm: Any,
        settings: Settings,
        worker_log: Path,
    ) -> None:
        fake_vlm.delay = 1.0
        job = client.post(
            "/v2/media/categories",
            json={"media_url": f"{media_server}/sample.mp4", "max_frames": 8},
        ).json()["job_id"]
        job_id = uuid.UUID(job)
        poll_job(client, job, until=lambda j: j["stage"] == "captioning")
        wait_for(lambda: fake_vlm.in_flight > 0, timeout=30, what="requests in flight")
        assert client.delete(f"/v2/media/categories/{job}").status_code == 200
        assert purged(client, job)
        # The requests in flight come back after the purge, and their work stops.
        wait_for(
            lambda: f"job {job} was cancelled; stopped" in worker_log.read_text(errors="replace"),
            timeout=60,
            what="the job's work to stop",
        )
        with session_factory() as session:
            rows = session.scalar(select(func.count()).where(JobFrame.job_id == job_id))
            rows += session.scalar(select(func.count()).where(JobStageTiming.job_id == job_id))
        assert rows == 0
        assert list(open_store(settings).list(paths.job(job_id))) == []
        assert client.get(f"/v2/media/categories/{job}").status_code == 404
