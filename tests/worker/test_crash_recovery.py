"""kill -9 of a real Celery worker (its whole process group) at each stage of a job, then a
fresh worker: the job completes, complete and without duplicates, no captioned frame goes to
the model twice, and every webhook delivery carries the one webhook-id of its event.

These workers use a database and a Redis db of their own (with short leases), so the
session's worker never sees their jobs.
"""

from __future__ import annotations

import http.server
import json
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from db import jobs as job_repo
from db.keys import create_key
from scenecap.core.settings import Settings
from tests.conftest import serve_http, wait_for
from tests.support.isolated import IsolatedStack, isolated_stack

CRASH_REDIS = "redis://127.0.0.1:6379/14"


@dataclass
class Receiver:
    """A webhook receiver whose first answer is slow (so a worker can die mid-delivery)."""

    url: str = ""
    received: list[dict[str, Any]] = field(default_factory=list)
    first_delay: float = 0.0


@pytest.fixture(scope="module")
def slow_media(media_dir: Path) -> Iterator[str]:
    """Serves media files in 8 pieces, 0.4 s apart: a download that takes ~3 s."""

    class Handler(http.server.BaseHTTPRequestHandler):
        def log_message(self, format: str, *args: Any) -> None:
            return None

        def do_GET(self) -> None:
            body = (media_dir / self.path.lstrip("/")).read_bytes()
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            step = len(body) // 8 + 1
            try:
                for start in range(0, len(body), step):
                    self.wfile.write(body[start : start + step])
                    self.wfile.flush()
                    time.sleep(0.4)  # a slow media server, so the download stage lasts
            except (BrokenPipeError, ConnectionResetError):
                return

    with serve_http(Handler) as url:
        yield url


@pytest.fixture(scope="module")
def receiver() -> Iterator[Receiver]:
    state = Receiver()

    class Handler(http.server.BaseHTTPRequestHandler):
        def log_message(self, format: str, *args: Any) -> None:
            return None

        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("content-length") or 0))
            first = not state.received
            state.received.append({"id": self.headers["webhook-id"], "body": json.loads(body)})
            if first and state.first_delay:
                time.sleep(state.first_delay)  # a slow receiver: the delivery is in flight
            self.send_response(200)
            self.send_header("Content-Length", "0")
            self.end_headers()

    with serve_http(Handler) as url:
        state.url = url
        yield state


@pytest.fixture
def crashable(settings: Settings, tmp_path: Path) -> Iterator[IsolatedStack]:
    yield from isolated_stack(settings, tmp_path, CRASH_REDIS)


STAGES: dict[str, tuple[str, dict[str, Any], Callable[[Any, list[int], Receiver], bool]]] = {
    # stage: (media, job fields, when to kill: job row, stored frames, receiver)
    "downloading": ("slow", {}, lambda job, _f, _r: job.stage == "downloading"),
    "detecting_scenes": (
        "long.mp4",
        {"use_scenes": True},
        lambda job, _f, _r: job.stage == "detecting_scenes",
    ),
    "captioning": ("sample.mp4", {}, lambda _job, frames, _r: len(frames) >= 2),
    # Every frame is captioned: the fresh worker has nothing left to extract.
    "summarizing": ("sample.mp4", {}, lambda job, _f, _r: job.stage == "summarizing"),
    "after_commit_before_webhook": (
        "sample.mp4",
        {},
        lambda job, _f, receiver: job.status == "COMPLETED" and bool(receiver.received),
    ),
}


@pytest.mark.parametrize("stage", list(STAGES))
def test_a_worker_killed_at_any_stage_is_replaced_without_duplicate_work(
    crashable: IsolatedStack,
    slow_media: str,
    media_server: str,
    receiver: Receiver,
    fake_vlm: Any,
    stage: str,
) -> None:
    media, fields, kill_when = STAGES[stage]
    url = f"{slow_media}/sample.mp4" if media == "slow" else f"{media_server}/{media}"
    fake_vlm.delay = 0.3
    receiver.received.clear()
    receiver.first_delay = 1.5 if stage == "after_commit_before_webhook" else 0.0
    with crashable.session_factory.begin() as session:
        key, _plaintext = create_key(session, "crash")
        job_id = job_repo.create_job(
            session,
            api_key_id=key.id,
            media_url=url,
            media_type="video",
            requested_metadata=["tags"],
            max_frames=6,
            webhook_url=f"{receiver.url}/hook",
            **fields,
        ).id
    # Nothing enqueues it: the reaper finds the pending job, as after a lost message.
    first = crashable.start_worker()
    wait_for(
        lambda: kill_when(crashable.job(job_id), crashable.frames(job_id), receiver),
        timeout=60,
        interval=0.02,
        what=f"the job to reach {stage}",
    )
    crashable.kill(first)
    kept = crashable.frames(job_id)
    wait_for(lambda: fake_vlm.in_flight == 0, timeout=10, what="in-flight requests to end")
    sent_before = len(fake_vlm.image_requests())

    crashable.start_worker()
    job = wait_for(
        lambda: (j := crashable.job(job_id)).status == "COMPLETED" and j.stage == "done" and j,
        timeout=90,
        what="the fresh worker to finish the job",
    )
    frames = crashable.frames(job_id)
    assert frames == list(range(len(frames))) and len(frames) >= 4, frames
    assert [f["index"] for f in job.results["frames"]] == frames, "complete, no duplicates"
    assert len(fake_vlm.image_requests()) - sent_before == len(frames) - len(kept), (
        "frames captioned before the kill went to the model again"
    )
    deliveries = wait_for(
        lambda: [r for r in receiver.received if r["body"]["data"]["job_id"] == str(job_id)],
        timeout=60,
        what="the webhook",
    )
    assert {r["id"] for r in deliveries} == {deliveries[0]["id"]}, "one webhook-id per event"
    assert {r["body"]["type"] for r in deliveries} == {"media.completed"}


@pytest.fixture
def one_attempt(settings: Settings, tmp_path: Path) -> Iterator[IsolatedStack]:
    yield from isolated_stack(settings, tmp_path, CRASH_REDIS, job_max_attempts=1)


def test_a_job_that_keeps_killing_its_worker_ends_worker_lost(
    one_attempt: IsolatedStack, media_server: str, fake_vlm: Any
) -> None:
    fake_vlm.delay = 0.5
    with one_attempt.session_factory.begin() as session:
        key, _plaintext = create_key(session, "lost")
        job_id = job_repo.create_job(
            session,
            api_key_id=key.id,
            media_url=f"{media_server}/sample.mp4",
            media_type="video",
            requested_metadata=["tags"],
            max_frames=6,
        ).id
    first = one_attempt.start_worker()
    wait_for(lambda: one_attempt.frames(job_id), timeout=60, what="the job to be captioning")
    one_attempt.kill(first)
    # The successor's reaper finds the lapsed lease with no attempt left: no redelivery loop.
    one_attempt.start_worker()
    job = wait_for(
        lambda: (j := one_attempt.job(job_id)).status != "PROCESSING" and j,
        timeout=60,
        what="the reaper to end the job",
    )
    assert (job.status, job.error_code) == ("FAILED", "WORKER_LOST")
