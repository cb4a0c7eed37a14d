"""A worker stack of its own for tests that kill or cut things: its own database, its own
broker, short leases. The session's worker never sees its jobs."""

from __future__ import annotations

import os
import signal
import subprocess
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import redis

from db import frames as frame_repo
from db import jobs as job_repo
from db.migrate import upgrade
from db.session import make_engine, make_session_factory
from scenecap.dev import worker_command
from scenecap.settings import Settings
from tests.conftest import ROOT, recreate_database, settings_env, wait_for


@dataclass
class IsolatedStack:
    settings: Settings
    session_factory: Any
    log: Path
    workers: list[subprocess.Popen[bytes]] = field(default_factory=list)

    def start_worker(self) -> subprocess.Popen[bytes]:
        command = worker_command(self.log.parent / f"beat-{len(self.workers)}", concurrency=1)
        with self.log.open("ab") as log:  # the child keeps its own descriptor
            worker = subprocess.Popen(
                command,
                env=settings_env(self.settings),
                cwd=ROOT,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        self.workers.append(worker)
        wait_for(
            lambda: (
                self.log.read_text().count("ready.") == len(self.workers)
                or worker.poll() is not None
            ),
            timeout=60,
            what="the worker to start",
        )
        assert worker.poll() is None, self.log.read_text()[-3000:]
        return worker

    def kill(self, worker: subprocess.Popen[bytes]) -> None:
        os.killpg(worker.pid, signal.SIGKILL)  # the whole group: pool children, decoders
        worker.wait()

    def job(self, job_id: uuid.UUID) -> Any:
        with self.session_factory() as session:
            return job_repo.get_job(session, job_id, with_results=True)

    def frames(self, job_id: uuid.UUID) -> list[int]:
        with self.session_factory() as session:
            return [f.index for f in frame_repo.stored_frames(session, job_id)]


def isolated_stack(
    settings: Settings, folder: Path, broker_url: str, **overrides: Any
) -> Iterator[IsolatedStack]:
    """Build the stack (fresh database "scenecap_isolated"); kill its workers afterwards."""
    if broker_url.startswith("redis://127.0.0.1:6379/"):
        redis.Redis.from_url(broker_url).flushdb()
    database = recreate_database("scenecap_isolated")
    upgrade(database)
    engine = make_engine(database)
    stack = IsolatedStack(
        settings.model_copy(
            update={
                "database_url": database,
                "broker_url": broker_url,
                "job_lease_seconds": 5,
                "reaper_interval_seconds": 1,
                "webhook_timeout_seconds": 2,
                "vlm_max_concurrency": 1,
                **overrides,
            }
        ),
        make_session_factory(engine),
        folder / "worker.log",
    )
    yield stack
    for worker in stack.workers:
        if worker.poll() is None:
            stack.kill(worker)
    engine.dispose()
