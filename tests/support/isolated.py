"""A worker stack of its own for tests that kill or cut things: its own database, its own
broker, short leases, `scenecap worker` and `scenecap beat` started as docker-compose.yml
starts them. The session's worker never sees its jobs."""

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
from db.session import make_engine, make_session_factory
from migrations.apply import upgrade
from scenecap.core.settings import Settings
from tests.conftest import ROOT, recreate_database, settings_env, shipped_command, wait_for
from worker.submit import JobQueue


@dataclass
class IsolatedStack:
    settings: Settings
    session_factory: Any
    log: Path
    workers: list[subprocess.Popen[bytes]] = field(default_factory=list)
    beat: subprocess.Popen[bytes] | None = None

    def _start(self, command: list[str]) -> subprocess.Popen[bytes]:
        # Its own TMPDIR: the decoder's files, and the scheduler's schedule file.
        env = {**settings_env(self.settings), "TMPDIR": str(self.log.parent)}
        with self.log.open("ab") as log:  # the child keeps its own descriptor
            return subprocess.Popen(
                command,
                env=env,
                cwd=ROOT,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )

    def start_beat(self) -> subprocess.Popen[bytes]:
        """`scenecap beat`: the reaper and the outbox sweep, every REAPER_INTERVAL_SECONDS."""
        self.beat = self._start(shipped_command("beat"))
        return self.beat

    def start_worker(self) -> subprocess.Popen[bytes]:
        worker = self._start(shipped_command("worker", concurrency="1"))
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
    """Build the stack (fresh database "scenecap_isolated") with its scheduler running; kill
    its processes afterwards. Work enqueued in its sessions goes to its broker."""
    if broker_url.startswith("redis://127.0.0.1:6379/"):
        redis.Redis.from_url(broker_url).flushdb()
    database = recreate_database("scenecap_isolated")
    upgrade(database)
    engine = make_engine(database)
    stack_settings = settings.model_copy(
        update={
            "database_url": database,
            "broker_url": broker_url,
            "job_lease_seconds": 5,
            "reaper_interval_seconds": 1,
            "webhook_timeout_seconds": 2,
            "vlm_max_concurrency": 1,
            **overrides,
        }
    )
    stack = IsolatedStack(
        stack_settings,
        make_session_factory(engine, JobQueue.of(stack_settings).send),
        folder / "worker.log",
    )
    stack.start_beat()
    yield stack
    for process in [*stack.workers, stack.beat]:
        if process is not None and process.poll() is None:
            stack.kill(process)
    engine.dispose()
