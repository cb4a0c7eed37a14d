"""A job resumes where it stopped, and the caption budget follows the model's context.

These run the task body (`worker.tasks.process_job`) in child processes with their own
settings, so a process can be killed mid-job (kill -9) and a successor can take over. Their
jobs live in a database of their own: the session's reaper must not hand a job whose lease
lapsed on purpose to the session's worker.
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
from db.session import make_engine, make_session_factory
from migrations.apply import upgrade
from scenecap.core.settings import Settings
from tests.conftest import ROOT, recreate_database, settings_env, wait_for

RunJob = Callable[..., subprocess.Popen[bytes]]


@pytest.fixture(scope="module")
def private_database() -> Iterator[tuple[str, Any]]:
    url = recreate_database("scenecap_resume")
    upgrade(url)
    engine = make_engine(url)
    yield url, make_session_factory(engine)
    engine.dispose()


@pytest.fixture
def private_factory(private_database: tuple[str, Any]) -> Any:
    return private_database[1]


@pytest.fixture
def new_job(private_factory: Any, media_server: str) -> Callable[..., uuid.UUID]:
    def make(**fields: Any) -> uuid.UUID:
        with private_factory.begin() as session:
            key, _plaintext = create_key(session, "resume")
            job = job_repo.create_job(
                session,
                api_key_id=key.id,
                media_url=f"{media_server}/sample.mp4",
                media_type="video",
                requested_metadata=["tags"],
                **fields,
            )
            return job.id

    return make


@pytest.fixture
def run_job(settings: Settings, private_database: tuple[str, Any]) -> Iterator[RunJob]:
    """Start `process_job(job_id)` in a child process with these settings overrides."""
    children: list[subprocess.Popen[bytes]] = []

    def start(job_id: uuid.UUID, **overrides: Any) -> subprocess.Popen[bytes]:
        overrides = {"database_url": private_database[0], **overrides}
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


def stored(private_factory: Any, job_id: uuid.UUID) -> list[Any]:
    with private_factory() as session:
        return frame_repo.stored_frames(session, job_id)


def job_row(private_factory: Any, job_id: uuid.UUID) -> Any:
    with private_factory() as session:
        return job_repo.get_job(session, job_id)


def test_a_killed_job_resumes_without_captioning_stored_frames_again(
    private_factory: Any, new_job: Callable[..., uuid.UUID], run_job: RunJob, fake_vlm: Any
) -> None:
    fake_vlm.delay = 0.3
    job_id = new_job(max_frames=8)
    first = run_job(job_id, vlm_max_concurrency=1, job_lease_seconds=5)
    wait_for(lambda: len(stored(private_factory, job_id)) >= 3, timeout=60, what="3 frames stored")
    os.killpg(first.pid, signal.SIGKILL)  # the worker dies mid-captioning
    first.wait()
    kept = len(stored(private_factory, job_id))
    # The request in flight at the kill was sent (and paid for); count it before the restart.
    wait_for(lambda: fake_vlm.in_flight == 0, timeout=10, what="the in-flight request to end")
    sent_before = len(fake_vlm.image_requests())

    # The lease lapses; whoever picks the job up next resumes it.
    wait_for(
        lambda: (
            job_row(private_factory, job_id).lease_expires_at.replace(tzinfo=UTC)
            < datetime.now(UTC)
        ),
        timeout=10,
        what="the lease to lapse",
    )
    second = run_job(job_id, vlm_max_concurrency=1, job_lease_seconds=5)
    assert second.wait(timeout=120) == 0

    job = job_row(private_factory, job_id)
    assert job.status == "COMPLETED" and job.attempts == 2
    frames = stored(private_factory, job_id)
    assert [f.index for f in frames] == list(range(8)), "complete and free of duplicates"
    assert len(fake_vlm.image_requests()) - sent_before == 8 - kept
    with private_factory() as session:
        row = job_repo.get_owned_job(session, job_id, job.api_key_id)
        assert row is not None and row.results is not None
        results = row.results
    assert [f["index"] for f in results["frames"]] == list(range(8))


def test_small_context_lowers_the_frame_count_and_every_request_fits(
    private_factory: Any, new_job: Callable[..., uuid.UUID], run_job: RunJob, fake_vlm: Any
) -> None:
    context = 4096
    small = Settings(vlm_context_tokens=context)
    job_id = new_job(max_frames=60)
    assert run_job(job_id, vlm_context_tokens=context).wait(timeout=120) == 0
    assert job_row(private_factory, job_id).status == "COMPLETED"
    requests = fake_vlm.image_requests()
    assert len(requests) == small.frame_budget == (context - 1024 - 1024) // 300
    for request in requests:
        url = request.body["messages"][1]["content"][0]["image_url"]["url"]
        image = cv2.imdecode(
            np.frombuffer(__import__("base64").b64decode(url.split(",")[1]), np.uint8),
            cv2.IMREAD_COLOR,
        )
        assert image is not None
        image_tokens = (image.shape[0] // 28) * (image.shape[1] // 28)
        text_tokens = len(str(request.body["messages"])) // 4 - len(url) // 4
        assert image_tokens + text_tokens + request.body["max_tokens"] <= context
