"""GET /metrics in the Prometheus text format, computed at scrape time from PostgreSQL and
the broker (correct however many API and worker processes run)."""

from __future__ import annotations

from collections.abc import Iterator

from fastapi import APIRouter, Request, Response
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric

from db.metrics import Totals, totals
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
        depth = GaugeMetricFamily(
            "scenecap_queue_depth", "Messages waiting in each queue", labels=["queue"]
        )
        for queue, count in self.depths.items():
            depth.add_metric([queue], count)
        yield depth


@router.get("/metrics", response_class=Response, summary="Prometheus metrics")
def metrics(request: Request) -> Response:
    with request.app.state.session_factory() as session:
        figures = totals(session)
    queue: JobQueue = request.app.state.queue
    depths = {name: queue.depth(name) for name in (MEDIA_QUEUE, WEBHOOKS_QUEUE)}
    registry = CollectorRegistry(auto_describe=False)
    registry.register(_Snapshot(figures, depths))
    return Response(generate_latest(registry), media_type=CONTENT_TYPE)
