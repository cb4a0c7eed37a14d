"""GET /metrics: Prometheus text, figures that follow what the service did."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.conftest import is_terminal, poll_job

pytestmark = pytest.mark.usefixtures("worker")


def scrape(api_url: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    response = httpx.get(f"{api_url}/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(response.text)
        for sample in family.samples
    }


def test_metrics_count_jobs_frames_and_tokens(
    api_url: str, client: httpx.Client, media_server: str, fake_vlm: Any
) -> None:
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
    api_url: str, client: httpx.Client, media_server: str, fake_vlm: Any
) -> None:
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
