"""GET /metrics in the Prometheus text format, computed from PostgreSQL and the broker
(correct however many API and worker processes run), for whoever holds METRICS_TOKEN.

A scrape runs about ten aggregate queries; the text is kept METRICS_CACHE_SECONDS, so any
number of scrapers (or a misbehaving one) cost the database at most that many a period.
"""

from __future__ import annotations

import hmac
import threading
import time
from collections.abc import Callable, Iterator

from fastapi import APIRouter, Request, Response
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)

from api.deps import Credentials
from api.errors import responses
from db.metrics import Histogram, Totals, totals
from db.usage import FIGURES
from scenecap.core.enums import JobStatus
from scenecap.core.errors import Unauthenticated
from scenecap.core.settings import Settings
from scenecap.core.tasks import MEDIA_QUEUE, WEBHOOKS_QUEUE
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
        keyed = GaugeMetricFamily(
            "scenecap_key_usage",
            "What each API key's jobs used, by key name: jobs, frames, segments, tokens, "
            "audio and media seconds, reused frames and segments",
            labels=["key", "figure"],
        )
        for row in f.usage_by_key:
            for name in ("jobs", *FIGURES):
                keyed.add_metric([row["key"], name], float(row[name]))
        yield keyed
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


class MetricsCache:
    """The last rendered scrape, reused while it is younger than `seconds`."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self._lock = threading.Lock()
        self._text, self._at = b"", -float("inf")

    def get(self, render: Callable[[], bytes]) -> bytes:
        with self._lock:  # one scrape renders; the others wait for its result
            if time.monotonic() - self._at >= self.seconds:
                self._text, self._at = render(), time.monotonic()
            return self._text


def check_scraper(settings: Settings, credentials: Credentials) -> None:
    """Only the holder of METRICS_TOKEN reads the figures (they span every key's jobs)."""
    token = settings.metrics_token
    if token is None:
        if settings.environment == "production":
            raise Unauthenticated("metrics are off: set SCENECAP_METRICS_TOKEN to scrape them")
        return
    given = credentials.credentials if credentials is not None else ""
    if not hmac.compare_digest(given.encode(), token.get_secret_value().encode()):
        raise Unauthenticated("send the metrics token as 'Authorization: Bearer <token>'")


@router.get(
    "/metrics",
    response_class=Response,
    responses={
        200: {"content": {CONTENT_TYPE: {}}, "description": "Prometheus text format"},
        **responses(Unauthenticated, json_beside=True),
    },
    summary="Prometheus metrics (bearer METRICS_TOKEN)",
)
def metrics(request: Request, credentials: Credentials) -> Response:
    state = request.app.state
    check_scraper(state.settings, credentials)
    return Response(state.metrics.get(lambda: _render(request)), media_type=CONTENT_TYPE)


def _render(request: Request) -> bytes:
    with request.app.state.reader() as session:
        figures = totals(session)
    queue: JobQueue = request.app.state.queue
    depths = {name: queue.depth(name) for name in (MEDIA_QUEUE, WEBHOOKS_QUEUE)}
    registry = CollectorRegistry(auto_describe=False)
    registry.register(_Snapshot(figures, depths))
    return bytes(generate_latest(registry))
