"""A segment-mode job survives kill -9 of its worker, and fails cleanly on media that breaks.

These start `scenecap worker` and `scenecap beat` of their own (as docker-compose.yml runs
them) on a private database, Redis database and store, so their short leases and the kills
touch nobody else's jobs.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
from celery import Celery

from db import jobs as job_repo
from db import work
from db.keys import create_key
from db.session import make_engine, make_session_factory
from migrations.apply import upgrade
from scenecap.core.settings import Settings
from scenecap.core.tasks import MEDIA_QUEUE, PROCESS_JOB
from scenecap.store import paths
from tests.conftest import ROOT, recreate_database, settings_env, shipped_command, wait_for

BROKER = "redis://127.0.0.1:6379/13"
_SPAN = re.compile(r"from ([\d.]+) s to ([\d.]+) s")
Start = Callable[[], subprocess.Popen[bytes]]


@pytest.fixture(scope="module")
def private(
    settings: Settings, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[Settings, Any]]:
    url = recreate_database("scenecap_segments")
    upgrade(url)
    mine = settings.model_copy(
        update={
            "database_url": url,
            "broker_url": BROKER,
            "media_store": f"file://{tmp_path_factory.mktemp('segment-store')}",
            "job_lease_seconds": 5,
            "reaper_interval_seconds": 1,
            "vlm_max_concurrency": 1,
            "segments_per_task": 2,
        }
    )
    engine = make_engine(url)
    yield mine, make_session_factory(engine)
    engine.dispose()


@pytest.fixture
def start_worker(private: tuple[Settings, Any], tmp_path: Path) -> Iterator[Start]:
    """Start a worker (and, the first time, beat) on the private settings; kill all at the end."""
    settings = private[0]
    redis.Redis.from_url(BROKER).flushdb()
    env = {**settings_env(settings), "TMPDIR": str(tmp_path)}
    log = (tmp_path / "worker.log").open("ab")
    children: list[subprocess.Popen[bytes]] = []

    def spawn(service: str) -> subprocess.Popen[bytes]:
        child = subprocess.Popen(
            shipped_command(service),
            env=env,
            cwd=ROOT,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        children.append(child)
        return child

    def start() -> subprocess.Popen[bytes]:
        if not children:
            spawn("beat")
        return spawn("worker")

    yield start
    for child in children:
        if child.poll() is None:
            os.killpg(child.pid, signal.SIGTERM)
    for child in children:
        try:
            child.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(child.pid, signal.SIGKILL)
            child.wait()
    log.close()


def submit(private: tuple[Settings, Any], media_url: str, **fields: Any) -> uuid.UUID:
    settings, factory = private
    with factory.begin() as session:
        key, _plaintext = create_key(session, "segments")
        job_id: uuid.UUID = job_repo.create_job(
            session,
            api_key_id=key.id,
            media_url=media_url,
            media_type="video",
            requested_metadata=["tags"],
            **fields,
        ).id
    sender = Celery(broker=settings.broker_url)
    sender.send_task(PROCESS_JOB, args=[str(job_id)], queue=MEDIA_QUEUE)
    sender.close()
    return job_id


def stored_segments(factory: Any, job_id: uuid.UUID) -> set[int]:
    with factory() as session:
        return {s.index for s in work.segments_of(session, job_id) if s.captioned_at is not None}


def requested_segments(fake_vlm: Any) -> list[int]:
    """The segments sent to the model, by their start time (10-second segments)."""
    spans = []
    for request in fake_vlm.image_requests():
        found = _SPAN.search(request.body["messages"][-1]["content"][0]["text"])
        if found:
            spans.append(round(float(found.group(1)) / 10))
    return spans


def job_row(factory: Any, job_id: uuid.UUID) -> Any:
    with factory() as session:
        return job_repo.get_job(session, job_id)


def test_a_killed_worker_never_costs_a_stored_segment_again(
    private: tuple[Settings, Any], start_worker: Start, media_server: str, fake_vlm: Any
) -> None:
    factory = private[1]
    fake_vlm.delay = 0.4
    first = start_worker()
    job_id = submit(private, f"{media_server}/long.mp4", segment_seconds=10.0, frames_per_segment=2)
    wait_for(lambda: len(stored_segments(factory, job_id)) >= 3, timeout=90, what="3 segments")
    os.killpg(first.pid, signal.SIGKILL)  # the worker dies mid-job, its tasks with it
    first.wait()
    kept = stored_segments(factory, job_id)
    wait_for(lambda: fake_vlm.in_flight == 0, timeout=10, what="in-flight requests to end")
    sent_before = len(requested_segments(fake_vlm))

    start_worker()  # beat's reaper hands the lapsed tasks to it
    wait_for(
        lambda: job_row(factory, job_id).status in ("COMPLETED", "FAILED"),
        timeout=120,
        what="the job to end",
    )
    job = job_row(factory, job_id)
    assert job.status == "COMPLETED", job.error_message
    assert stored_segments(factory, job_id) == set(range(8))
    resent = requested_segments(fake_vlm)[sent_before:]
    assert not set(resent) & kept, "a stored segment was sent to the model again"
    assert set(resent) == set(range(8)) - kept
    with factory() as session:
        row = job_repo.get_owned_job(session, job_id, job.api_key_id)
        assert row is not None and row.results is not None
        results = row.results
    assert [s["index"] for s in results["segments"]] == list(range(8))


@pytest.mark.worker_errors_expected
def test_media_that_breaks_the_decoder_fails_the_job_with_its_code(
    private: tuple[Settings, Any], start_worker: Start, media_server: str, fake_vlm: Any
) -> None:
    """The job's first task probes and plans; when the segment tasks find the stored media
    broken (here: overwritten), the job fails MEDIA_UNREADABLE once, without retries."""
    settings, factory = private
    job_id = submit(private, f"{media_server}/long.mp4", segment_seconds=10.0)
    # No worker yet: run the job's own task here, which plans and queues the segment tasks.
    env = settings_env(settings)
    code = f"from worker.tasks import process_job; process_job({str(job_id)!r})"
    subprocess.run([sys.executable, "-c", code], env=env, cwd=ROOT, check=True)
    assert job_row(factory, job_id).segments_total == 8
    store_root = Path(settings.media_store.removeprefix("file://"))
    (store_root / paths.media(job_id)).write_bytes(os.urandom(200_000))

    start_worker()
    wait_for(
        lambda: job_row(factory, job_id).status in ("COMPLETED", "FAILED"),
        timeout=60,
        what="the job to end",
    )
    job = job_row(factory, job_id)
    assert job.status == "FAILED" and job.error_code == "MEDIA_UNREADABLE"
    assert requested_segments(fake_vlm) == []
    with factory() as session:
        items = work.items_of(session, job_id, work.ItemKind.SEGMENTS)
    assert all(item.attempts <= 1 for item in items), "a broken segment must not loop"


@pytest.mark.parametrize(
    ("fields", "waits_for"),
    [({}, "captioning"), ({"use_scenes": True}, "detecting_scenes")],
)
def test_a_handed_over_job_shows_the_stage_it_waits_for(
    private: tuple[Settings, Any], media_server: str, fields: dict[str, Any], waits_for: str
) -> None:
    """Once its own task has planned the work and queued it, the job shows what its work
    items will do, not the download it finished, while no worker has taken them yet."""
    settings, factory = private
    redis.Redis.from_url(BROKER).flushdb()
    job_id = submit(private, f"{media_server}/long.mp4", segment_seconds=10.0, **fields)
    code = f"from worker.tasks import process_job; process_job({str(job_id)!r})"
    subprocess.run([sys.executable, "-c", code], env=settings_env(settings), cwd=ROOT, check=True)
    job = job_row(factory, job_id)
    assert (job.status, job.stage) == ("PROCESSING", waits_for)
    with factory() as session:
        queued = work.items_of(session, job_id, work.ItemKind.SEGMENTS)
        queued += work.items_of(session, job_id, work.ItemKind.SCENES)
    assert queued and all(item.attempts == 0 for item in queued), "nothing has taken them"
