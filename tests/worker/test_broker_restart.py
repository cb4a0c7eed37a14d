"""Redis restarted with its data gone while jobs are queued and running: every job still
reaches a terminal state (the reaper re-queues what the broker forgot)."""

from __future__ import annotations

import shutil
import socket
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis

from db import jobs as job_repo
from db.keys import create_key
from db.session import enqueue
from scenecap.core.settings import Settings
from scenecap.core.tasks import PROCESS_JOB
from tests.conftest import wait_for
from tests.support.isolated import IsolatedStack, isolated_stack


class PrivateRedis:
    """A redis-server of this test's own (the shared one must stay up for everything else)."""

    def __init__(self, folder: Path) -> None:
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            self.port = probe.getsockname()[1]
        self.folder = folder
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        server = shutil.which("redis-server") or "/usr/bin/redis-server"
        ephemeral = ["--save", "", "--appendonly", "no", "--dir", str(self.folder)]
        self.process = subprocess.Popen(
            [server, "--port", str(self.port), "--bind", "127.0.0.1", *ephemeral],
            stdout=subprocess.DEVNULL,
        )
        wait_for(self._up, timeout=20, what="redis to start")

    def crash(self) -> None:
        assert self.process is not None
        self.process.kill()  # SIGKILL: nothing saved, the queues are gone
        self.process.wait()

    def _up(self) -> bool:
        try:
            return bool(redis.Redis.from_url(self.url).ping())
        except redis.ConnectionError:
            return False


@pytest.fixture
def private_redis(tmp_path: Path) -> Iterator[PrivateRedis]:
    server = PrivateRedis(tmp_path)
    server.start()
    yield server
    if server.process is not None and server.process.poll() is None:
        server.crash()


@pytest.fixture
def stack(
    settings: Settings, tmp_path: Path, private_redis: PrivateRedis
) -> Iterator[IsolatedStack]:
    yield from isolated_stack(settings, tmp_path, private_redis.url)


def test_jobs_survive_a_redis_restart_that_lost_every_message(
    stack: IsolatedStack, private_redis: PrivateRedis, media_server: str, fake_vlm: Any
) -> None:
    fake_vlm.delay = 0.3
    stack.start_worker()
    job_ids: list[uuid.UUID] = []
    with stack.session_factory.begin() as session:
        key, _plaintext = create_key(session, "broker")
        for _ in range(4):
            job = job_repo.create_job(
                session,
                api_key_id=key.id,
                media_url=f"{media_server}/sample.mp4",
                media_type="video",
                requested_metadata=["tags"],
                max_frames=4,
            )
            job_ids.append(job.id)
            enqueue(session, PROCESS_JOB, str(job.id))
    wait_for(
        lambda: any(stack.job(j).status == "PROCESSING" for j in job_ids),
        timeout=60,
        what="a job to be running",
    )
    assert any(stack.job(j).status == "PENDING" for j in job_ids), "some must still be queued"

    private_redis.crash()
    private_redis.start()  # empty: the queued messages are gone

    wait_for(
        lambda: all(stack.job(j).status in ("COMPLETED", "FAILED", "CANCELLED") for j in job_ids),
        timeout=120,
        what="every job to end",
    )
    for job_id in job_ids:
        job = stack.job(job_id)
        assert job.status == "COMPLETED", (job.status, job.error_code, job.error_message)
        assert stack.frames(job_id) == [0, 1, 2, 3]
