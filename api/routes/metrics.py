"""GET /metrics in the Prometheus text format, computed at scrape time from PostgreSQL and
the broker (correct however many API and worker processes run)."""

from __future__ import annotations

from collections.abc import Iterator

from fastapi import APIRouter, Request, Response
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)

from db.metrics import Histogram, Totals, totals
from db.models import JobStatus
from worker.celery_app import MEDIA_QUEUE, WEBHOOKS_QUEUE
from worker.submit import JobQueue

router = APIRouter(tags=["operations"])
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


class _Snapshot:
    """A one-shot collector over figures already read."""

    def __init__(self, figures: Totals, depths: dict[str, int]) -> None:
        self.figures = figures
        self.depths = depths

    def collect(self) -> Iterator[Metric]:
        f = self.figures
        jobs = GaugeMetricFamily(
            "scenecap_jobs", "Jobs by kind and status", labels=["kind", "status"]
        )
        kinds = {kind for kind, _status in f.jobs_by_kind_status} | {"categories"}
        for kind in sorted(kinds):
            for status in JobStatus:
                jobs.add_metric([kind, status.value], f.jobs_by_kind_status.get((kind, status), 0))
        yield jobs
        yield CounterMetricFamily(
            "scenecap_frames_captioned", "Frames captioned and stored", value=f.frames_captioned
        )
        yield CounterMetricFamily(
            "scenecap_frames_unparsed", "Frames whose answer was not JSON", value=f.unparsed_frames
        )
        tokens = CounterMetricFamily(
            "scenecap_vision_tokens", "Tokens the vision model reported", labels=["type"]
        )
        tokens.add_metric(["prompt"], f.prompt_tokens)
        tokens.add_metric(["completion"], f.completion_tokens)
        yield tokens
        events = GaugeMetricFamily(
            "scenecap_webhook_events", "Webhook events by status", labels=["status"]
        )
        for state in ("pending", "delivered", "failed"):
            events.add_metric([state], f.webhook_events_by_status.get(state, 0))
        yield events
        attempts = CounterMetricFamily(
            "scenecap_webhook_attempts", "Webhook attempts by outcome", labels=["outcome"]
        )
        for outcome in ("2xx", "3xx", "4xx", "5xx", "error"):
            attempts.add_metric([outcome], f.webhook_attempts_by_outcome.get(outcome, 0))
        yield attempts
        stages = HistogramMetricFamily(
            "scenecap_stage_duration_seconds",
            "Seconds each job spent in each pipeline stage",
            labels=["stage"],
        )
        for stage, histogram in sorted(f.stage_seconds.items()):
            stages.add_metric([stage], *_buckets(histogram))
        yield stages
        vision = HistogramMetricFamily(
            "scenecap_vision_request_duration_seconds",
            "Wall seconds of each frame's vision-model call, retries included",
        )
        vision.add_metric([], *_buckets(f.vision_seconds))
        yield vision
        errors = CounterMetricFamily(
            "scenecap_vision_errors",
            "Vision-model failures: attempts retried, and jobs failed after the retry budget",
            labels=["outcome"],
        )
        errors.add_metric(["retried"], f.vision_retries)
        errors.add_metric(["gave_up"], f.jobs_failed_by_code.get("VISION_BACKEND_UNAVAILABLE", 0))
        yield errors
        failed = GaugeMetricFamily(
            "scenecap_jobs_failed", "Failed jobs by error code", labels=["code"]
        )
        for code, count in sorted(f.jobs_failed_by_code.items()):
            failed.add_metric([code], count)
        yield failed
        depth = GaugeMetricFamily(
            "scenecap_queue_depth", "Messages waiting in each queue", labels=["queue"]
        )
        for queue, count in self.depths.items():
            depth.add_metric([queue], count)
        yield depth


def _buckets(histogram: Histogram) -> tuple[list[tuple[str, float]], float]:
    buckets = [
        ("+Inf" if bound == float("inf") else str(bound), float(n))
        for bound, n in histogram.buckets
    ]
    return buckets, histogram.total


@router.get("/metrics", response_class=Response, summary="Prometheus metrics")
def metrics(request: Request) -> Response:
    with request.app.state.session_factory() as session:
        figures = totals(session)
    queue: JobQueue = request.app.state.queue
    depths = {name: queue.depth(name) for name in (MEDIA_QUEUE, WEBHOOKS_QUEUE)}
    registry = CollectorRegistry(auto_describe=False)
    registry.register(_Snapshot(figures, depths))
    return Response(generate_latest(registry), media_type=CONTENT_TYPE)
