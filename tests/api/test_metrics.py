"""GET /metrics: Prometheus text for the holder of the metrics token, figures that follow
what the service did, and scrapes that cost the database little."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families
from pydantic import SecretStr
from sqlalchemy import Engine, event

from api.main import create_app
from scenecap.core.settings import Settings
from tests.api.test_categories import assert_error
from tests.conftest import is_terminal, poll_job, serve_app

pytestmark = pytest.mark.usefixtures("worker")
TOKEN = "metrics-token-0123456789"
SCRAPER = {"Authorization": f"Bearer {TOKEN}"}


@pytest.fixture(scope="module")
def metrics_url(settings: Settings, database: str) -> Iterator[str]:
    """An API whose scrapes are never reused, so figures can be compared job by job."""
    app = create_app(
        settings.model_copy(update={"metrics_token": SecretStr(TOKEN), "metrics_cache_seconds": 0})
    )
    with serve_app(app) as url:
        yield url


def scrape(api_url: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    response = httpx.get(f"{api_url}/metrics", headers=SCRAPER)
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(response.text)
        for sample in family.samples
    }


class TestAccess:
    def test_scrapes_need_the_metrics_token(self, metrics_url: str, new_key: Any) -> None:
        assert_error(httpx.get(f"{metrics_url}/metrics"), 401, "UNAUTHENTICATED")
        wrong = httpx.get(f"{metrics_url}/metrics", headers={"Authorization": "Bearer nope"})
        assert_error(wrong, 401, "UNAUTHENTICATED")
        an_api_key = {"Authorization": f"Bearer {new_key()}"}
        assert_error(
            httpx.get(f"{metrics_url}/metrics", headers=an_api_key), 401, "UNAUTHENTICATED"
        )
        assert httpx.get(f"{metrics_url}/metrics", headers=SCRAPER).status_code == 200

    def test_production_without_a_token_refuses_every_scrape(self, settings: Settings) -> None:
        production = settings.model_copy(
            update={"environment": "production", "allow_private_urls": False}
        )
        with serve_app(create_app(production)) as url:
            refused = assert_error(httpx.get(f"{url}/metrics"), 401, "UNAUTHENTICATED")
        assert "SCENECAP_METRICS_TOKEN" in refused["message"]

    def test_a_scrape_is_reused_for_the_cache_period(self, settings: Settings) -> None:
        cached = settings.model_copy(
            update={"metrics_token": SecretStr(TOKEN), "metrics_cache_seconds": 600}
        )
        app = create_app(cached)
        statements: list[str] = []

        def count(_conn: Any, _cursor: Any, statement: str, *_rest: Any) -> None:
            statements.append(statement)

        # Every engine of this process: which pool the scrape reads from is not the point.
        event.listen(Engine, "before_cursor_execute", count)
        try:
            with serve_app(app) as url:
                first = httpx.get(f"{url}/metrics", headers=SCRAPER).text
                first_scrape = len(statements)
                later = [httpx.get(f"{url}/metrics", headers=SCRAPER).text for _ in range(4)]
        finally:
            event.remove(Engine, "before_cursor_execute", count)
        assert first_scrape > 0 and later == [first] * 4
        assert len(statements) == first_scrape, "the cached text was rendered again"


def test_metrics_count_jobs_frames_and_tokens(
    metrics_url: str, client: httpx.Client, media_server: str, fake_vlm: Any
) -> None:
    api_url = metrics_url
    before = scrape(api_url)
    completed = (("kind", "categories"), ("status", "COMPLETED"))
    job_id = client.post(
        "/v2/media/categories", json={"media_url": f"{media_server}/sample.mp4", "max_frames": 3}
    ).json()["job_id"]
    assert poll_job(client, job_id, until=is_terminal)["status"] == "COMPLETED"
    after = scrape(api_url)
    assert after[("scenecap_jobs", completed)] == before[("scenecap_jobs", completed)] + 1
    frames = ("scenecap_frames_captioned_total", ())
    assert after[frames] == before[frames] + 3
    prompt = ("scenecap_vision_tokens_total", (("type", "prompt"),))
    assert after[prompt] > before[prompt]
    assert ("scenecap_queue_depth", (("queue", "media"),)) in after
    assert ("scenecap_webhook_attempts_total", (("outcome", "2xx"),)) in after


def test_metrics_report_stage_durations_vision_latency_and_retries(
    metrics_url: str, client: httpx.Client, media_server: str, fake_vlm: Any
) -> None:
    api_url = metrics_url
    before = scrape(api_url)
    fake_vlm.fail_next = 2  # two 500s, each retried by the backend
    job_id = client.post(
        "/v2/media/categories", json={"media_url": f"{media_server}/sample.mp4", "max_frames": 2}
    ).json()["job_id"]
    assert poll_job(client, job_id, until=is_terminal)["status"] == "COMPLETED"
    after = scrape(api_url)

    def grew(name: str, labels: tuple[tuple[str, str], ...] = ()) -> float:
        return after[(name, labels)] - before.get((name, labels), 0.0)

    for stage in ("downloading", "extracting_frames", "captioning", "summarizing"):
        labels = (("stage", stage),)
        assert grew("scenecap_stage_duration_seconds_count", labels) == 1
        assert grew("scenecap_stage_duration_seconds_sum", labels) > 0
        inf = (("le", "+Inf"), ("stage", stage))
        assert (
            after[("scenecap_stage_duration_seconds_bucket", inf)]
            == after[("scenecap_stage_duration_seconds_count", labels)]
        )
    assert grew("scenecap_vision_request_duration_seconds_count") == 2
    assert grew("scenecap_vision_request_duration_seconds_sum") > 0
    assert grew("scenecap_vision_errors_total", (("outcome", "retried"),)) == 2
