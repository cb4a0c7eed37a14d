"""A job resumes where it stopped, and the caption budget follows the model's context.

These run the task body (`worker.tasks.process_job`) in child processes with their own
settings, so a process can be killed mid-job (kill -9) and a successor can take over.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from typing import Any

import cv2
import numpy as np
import pytest

from db import frames as frame_repo
from db import jobs as job_repo
from db.keys import create_key
from scenecap.settings import Settings
from tests.conftest import ROOT, settings_env, wait_for

RunJob = Callable[..., subprocess.Popen[bytes]]


@pytest.fixture
def new_job(session_factory: Any, media_server: str) -> Callable[..., uuid.UUID]:
    def make(**fields: Any) -> uuid.UUID:
        with session_factory.begin() as session:
            key, _plaintext = create_key(session, "resume")
            job = job_repo.create_job(
                session,
                api_key_id=key.id,
                media_url=f"{media_server}/sample.mp4",
                media_type="video",
                requested_metadata=["tags"],
                **fields,
            )
            return job.id  # type: ignore[no-any-return]

    return make


@pytest.fixture
def run_job(settings: Settings) -> Iterator[RunJob]:
    """Start `process_job(job_id)` in a child process with these settings overrides."""
    children: list[subprocess.Popen[bytes]] = []

    def start(job_id: uuid.UUID, **overrides: Any) -> subprocess.Popen[bytes]:
        env = settings_env(settings.model_copy(update=overrides))
        code = f"from worker.tasks import process_job; process_job({str(job_id)!r})"
        child = subprocess.Popen(
            [sys.executable, "-c", code], env=env, cwd=ROOT, start_new_session=True
        )
        children.append(child)
        return child

    yield start
    for child in children:
        if child.poll() is None:
            os.killpg(child.pid, signal.SIGKILL)
        child.wait()


def stored(session_factory: Any, job_id: uuid.UUID) -> list[Any]:
    with session_factory() as session:
        return frame_repo.stored_frames(session, job_id)


def job_row(session_factory: Any, job_id: uuid.UUID) -> Any:
    with session_factory() as session:
        return job_repo.get_job(session, job_id)


def test_a_killed_job_resumes_without_captioning_stored_frames_again(
    session_factory: Any, new_job: Callable[..., uuid.UUID], run_job: RunJob, fake_vlm: Any
) -> None:
    fake_vlm.delay = 0.3
    job_id = new_job(max_frames=8)
    first = run_job(job_id, vlm_max_concurrency=1, job_lease_seconds=5)
    wait_for(lambda: len(stored(session_factory, job_id)) >= 3, timeout=60, what="3 frames stored")
    os.killpg(first.pid, signal.SIGKILL)  # the worker dies mid-captioning
    first.wait()
    kept = len(stored(session_factory, job_id))
    # The request in flight at the kill was sent (and paid for); count it before the restart.
    wait_for(lambda: fake_vlm.in_flight == 0, timeout=10, what="the in-flight request to end")
    sent_before = len(fake_vlm.image_requests())

    # The lease lapses; whoever picks the job up next resumes it.
    wait_for(
        lambda: (
            job_row(session_factory, job_id).lease_expires_at.replace(tzinfo=UTC)
            < datetime.now(UTC)
        ),
        timeout=10,
        what="the lease to lapse",
    )
    second = run_job(job_id, vlm_max_concurrency=1, job_lease_seconds=5)
    assert second.wait(timeout=120) == 0

    job = job_row(session_factory, job_id)
    assert job.status == "COMPLETED" and job.attempts == 2
    frames = stored(session_factory, job_id)
    assert [f.index for f in frames] == list(range(8)), "complete and free of duplicates"
    assert len(fake_vlm.image_requests()) - sent_before == 8 - kept
    with session_factory() as session:
        results = job_repo.get_owned_job(session, job_id, job.api_key_id).results
    assert [f["index"] for f in results["frames"]] == list(range(8))


def test_small_context_lowers_the_frame_count_and_every_request_fits(
    session_factory: Any, new_job: Callable[..., uuid.UUID], run_job: RunJob, fake_vlm: Any
) -> None:
    context = 4096
    small = Settings(vlm_context_tokens=context)
    job_id = new_job(max_frames=60)
    assert run_job(job_id, vlm_context_tokens=context).wait(timeout=120) == 0
    assert job_row(session_factory, job_id).status == "COMPLETED"
    requests = fake_vlm.image_requests()
    assert len(requests) == small.frame_budget == (context - 1024 - 1024) // 300
    for request in requests:
        url = request.body["messages"][1]["content"][0]["image_url"]["url"]
        image = cv2.imdecode(
            np.frombuffer(__import__("base64").b64decode(url.split(",")[1]), np.uint8),
            cv2.IMREAD_COLOR,
        )
        image_tokens = (image.shape[0] // 28) * (image.shape[1] // 28)
        text_tokens = len(str(request.body["messages"])) // 4 - len(url) // 4
        assert image_tokens + text_tokens + request.body["max_tokens"] <= context
