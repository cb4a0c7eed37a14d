"""Every `scenecap` command as a real process, started as the README and docker-compose.yml
start it: long-running ones do their job and stop cleanly on SIGTERM; short-lived ones exit 0,
or non-zero with one error line."""

from __future__ import annotations

import http.server
import json
import os
import signal
import socket
import subprocess
import uuid
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import update

from db import jobs as job_repo
from db.keys import create_key, find_active_key, hash_key
from db.models import Job
from db.session import enqueue, make_session_factory
from scenecap.core.enums import JobStatus, utcnow
from scenecap.core.settings import Settings
from scenecap.core.tasks import PROCESS_JOB
from tests.conftest import (
    ROOT,
    SCENECAP,
    recreate_database,
    serve_http,
    settings_env,
    shipped_command,
    wait_for,
)
from tests.support.isolated import IsolatedStack, isolated_stack


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def run(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [SCENECAP, *args], env=env, capture_output=True, text=True, timeout=120, cwd=ROOT
    )


def one_error_line(done: subprocess.CompletedProcess[str], code: str) -> None:
    assert done.returncode != 0
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"scenecap: error: {code}: "), done.stderr


def stop(process: subprocess.Popen[Any]) -> int:
    """SIGTERM, as docker stop and systemd send it; the exit status once it is gone."""
    process.send_signal(signal.SIGTERM)
    return process.wait(timeout=60)


@pytest.fixture
def stack(settings: Settings, tmp_path: Path) -> Iterator[IsolatedStack]:
    yield from isolated_stack(settings, tmp_path, "redis://127.0.0.1:6379/13")


@pytest.fixture
def hooks() -> Iterator[tuple[str, list[bytes]]]:
    """A webhook receiver: its URL, and the bodies it got."""
    received: list[bytes] = []

    class Receiver(http.server.BaseHTTPRequestHandler):
        def log_message(self, format: str, *args: Any) -> None:
            return None

        def do_POST(self) -> None:
            received.append(self.rfile.read(int(self.headers["content-length"])))
            self.send_response(204)
            self.end_headers()

    with serve_http(Receiver) as url:
        yield url, received


class TestApi:
    def test_serves_and_stops_cleanly(self, settings: Settings, database: str) -> None:
        port = free_port()
        api = subprocess.Popen(
            [*shipped_command("api", port=str(port), host="127.0.0.1")],
            env=settings_env(settings),
            cwd=ROOT,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            ready = wait_for(
                lambda: _get(f"http://127.0.0.1:{port}/readyz"), timeout=60, what="the API"
            )
            assert ready.status_code == 200 and ready.json()["status"] == "ready"
        finally:
            assert stop(api) == 0


class TestWorkerAndBeat:
    def test_worker_processes_a_job_and_stops_cleanly(
        self, stack: IsolatedStack, media_server: str, fake_vlm: Any
    ) -> None:
        worker = stack.start_worker()
        job_id = new_job(stack, media_server, enqueued=True)
        wait_for(lambda: stack.job(job_id).status == "COMPLETED", timeout=120, what="the job")
        assert stop(worker) == 0

    def test_beat_requeues_a_lapsed_job_for_a_fresh_worker(
        self, stack: IsolatedStack, media_server: str, fake_vlm: Any
    ) -> None:
        # A job whose worker vanished: PROCESSING, its lease run out, no message in any queue.
        job_id = new_job(stack, media_server, enqueued=False)
        with stack.session_factory.begin() as session:
            session.execute(
                update(Job)
                .where(Job.id == job_id)
                .values(
                    status=JobStatus.PROCESSING,
                    attempts=1,
                    lease_expires_at=utcnow() - timedelta(seconds=1),
                )
            )
        stack.start_worker()
        settings = stack.settings
        wait_for(
            lambda: stack.job(job_id).status == "COMPLETED",
            # The reaper's interval, then the job itself (a few seconds on a busy machine).
            timeout=settings.job_lease_seconds + settings.reaper_interval_seconds + 60,
            what="beat to re-queue the job and a worker to finish it",
        )
        assert stack.job(job_id).attempts == 2
        assert stack.beat is not None and stop(stack.beat) == 0

    def test_beat_delivers_a_stranded_webhook(
        self,
        stack: IsolatedStack,
        media_server: str,
        hooks: tuple[str, list[bytes]],
    ) -> None:
        url, received = hooks
        # A job cancelled by a process that could not queue the delivery (its outbox row is
        # all there is): the sweep finds it.
        job_id = new_job(stack, media_server, enqueued=False, webhook_url=f"{url}/hook")
        unsent = make_session_factory(stack.session_factory.kw["bind"])  # no sender
        with unsent.begin() as session:
            job_repo.cancel_job(session, job_id)
        stack.start_worker()
        wait_for(lambda: received, timeout=60, what="the sweep to deliver the event")
        event = json.loads(received[0])
        assert (event["type"], event["data"]["job_id"]) == ("media.cancelled", str(job_id))


@pytest.mark.integration  # it starts a real worker and API of its own
class TestDev:
    def test_dev_serves_its_printed_url_and_key_and_stops_its_children(
        self, tmp_path: Path, media_server: str
    ) -> None:
        env = {k: v for k, v in os.environ.items() if not k.startswith("SCENECAP_")}
        env["HOME"] = str(tmp_path)  # embedded storage lives under ~/.scenecap
        workdir = tmp_path / "cwd"
        workdir.mkdir()
        dev = subprocess.Popen(
            [SCENECAP, "dev", "--port", str(free_port())],
            env=env,
            cwd=workdir,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
        )
        try:
            assert dev.stdout is not None
            printed = {}
            for line in dev.stdout:
                if line.startswith("scenecap is running at "):
                    printed["url"] = line.split()[4]
                if line.startswith("API key: "):
                    printed["key"] = line.split()[2]
                    break
            children = _children(dev.pid)
            assert len(children) == 2, "an API and a worker"
            headers = {"Authorization": f"Bearer {printed['key']}"}
            with httpx.Client(base_url=printed["url"], headers=headers, timeout=30) as client:
                job_id = client.post(
                    "/v2/media/categories",
                    json={"media_url": f"{media_server}/sample.mp4", "max_frames": 2},
                ).json()["job_id"]
                wait_for(
                    lambda: (
                        client.get(f"/v2/media/categories/{job_id}").json()["status"] == "COMPLETED"
                    ),
                    timeout=120,
                    what="the dev worker to finish a job",
                )
        finally:
            assert stop(dev) == 0
            assert dev.stdout is not None
            dev.stdout.close()
        assert not [pid for pid in children if Path(f"/proc/{pid}").exists()], "children left"
        assert not (workdir / "control").exists(), "broker state belongs under ~/.scenecap"


class TestShortLived:
    def test_migrate_brings_a_database_to_head(self, settings: Settings) -> None:
        url = recreate_database("scenecap_cli_migrate")
        done = run("migrate", env=settings_env(settings.model_copy(update={"database_url": url})))
        assert done.returncode == 0 and "database is at head" in done.stdout, done.stderr

    def test_migrate_without_a_database_is_one_error_line(self, settings: Settings) -> None:
        nowhere = "postgresql+psycopg://postgres@127.0.0.1:9/none"
        env = settings_env(settings.model_copy(update={"database_url": nowhere}))
        one_error_line(run("migrate", env=env), "DATABASE_UNAVAILABLE")

    def test_keys_create_list_and_revoke(
        self, settings: Settings, api_url: str, session_factory: Any
    ) -> None:
        env = settings_env(settings)
        created = run("keys", "create", "cli-test", "--json", env=env)
        assert created.returncode == 0, created.stderr
        key = json.loads(created.stdout)["key"]
        assert json.loads(created.stdout)["webhook_secret"].startswith("whsec_")
        headers = {"Authorization": f"Bearer {key}"}
        assert httpx.get(f"{api_url}/v2/media/categories", headers=headers).status_code == 200
        job_id = _job_of(session_factory, key)
        link = httpx.post(
            f"{api_url}/v2/media/categories/{job_id}/share", headers=headers, json={}
        ).json()["report_url"]
        assert httpx.get(f"{api_url}{link}").status_code == 200

        listed = json.loads(run("keys", "list", "--json", env=env).stdout)
        [mine] = [k for k in listed if k["prefix"] == key[:10]]
        assert mine["name"] == "cli-test" and mine["revoked"] is None
        assert mine["last_used"] is not None, "the request above used it"
        table = run("keys", "list", env=env).stdout
        assert "cli-test" in table and key[:10] in table

        revoked = run("keys", "revoke", key[:10], env=env)
        assert revoked.returncode == 0 and "revoked" in revoked.stdout, revoked.stderr
        # The API trusts a lookup for KEY_CACHE_SECONDS (1 s): then 401, in every process.
        wait_for(
            lambda: httpx.get(f"{api_url}/v2/media/categories", headers=headers).status_code == 401,
            timeout=settings.key_cache_seconds + 5,
            what="the revoked key to be refused",
        )
        listed = json.loads(run("keys", "list", "--json", env=env).stdout)
        assert [k["revoked"] for k in listed if k["prefix"] == key[:10]] != [None]
        assert httpx.get(f"{api_url}{link}").status_code == 401, "its share links stop working"

    def test_keys_carry_a_daily_token_quota(self, settings: Settings, session_factory: Any) -> None:
        env = settings_env(settings)
        created = run("keys", "create", "quota-cli", "--tokens-per-day", "5000", "--json", env=env)
        assert created.returncode == 0, created.stderr
        prefix = json.loads(created.stdout)["key"][:10]

        def quota() -> Any:
            listed = json.loads(run("keys", "list", "--json", env=env).stdout)
            return next(k["tokens_per_day"] for k in listed if k["prefix"] == prefix)

        assert quota() == 5000
        updated = run("keys", "update", prefix, "--tokens-per-day", "250000", env=env)
        assert updated.returncode == 0 and "250,000 tokens a day" in updated.stdout
        assert quota() == 250000
        assert run("keys", "update", prefix, "--tokens-per-day", "none", env=env).returncode == 0
        assert quota() is None
        refused = run("keys", "update", prefix, "--tokens-per-day", "-3", env=env)
        assert refused.returncode == 2 and "1 or more" in refused.stderr
        one_error_line(
            run("keys", "update", "sc_nosuchkey", "--tokens-per-day", "1", env=env),
            "KEY_NOT_FOUND",
        )

    def test_demo_on_a_busy_port_is_one_error_line(self, tmp_path: Path) -> None:
        env = {k: v for k, v in os.environ.items() if not k.startswith("SCENECAP_")}
        env["HOME"] = str(tmp_path)
        with socket.socket() as busy:
            busy.bind(("127.0.0.1", 0))
            busy.listen()
            done = run("demo", "--port", str(busy.getsockname()[1]), env=env)
        one_error_line(done, "PORT_IN_USE")

    def test_revoking_an_unknown_key_is_one_error_line(self, settings: Settings) -> None:
        one_error_line(
            run("keys", "revoke", "sc_nosuchkey", env=settings_env(settings)), "KEY_NOT_FOUND"
        )

    def test_revoke_can_cancel_the_keys_running_jobs(
        self, settings: Settings, session_factory: Any, media_server: str
    ) -> None:
        with session_factory.begin() as session:
            key, _plaintext = create_key(session, "leaked")
            job = job_repo.create_job(
                session,
                api_key_id=key.id,
                media_url=f"{media_server}/sample.mp4",
                media_type="video",
                requested_metadata=["tags"],
            )
        done = run("keys", "revoke", str(key.id), "--cancel-jobs", env=settings_env(settings))
        assert done.returncode == 0 and "1 running jobs cancelled" in done.stdout, done.stderr
        with session_factory() as session:
            assert job_repo.get_job(session, job.id).status == "CANCELLED"  # type: ignore[union-attr]


def new_job(stack: IsolatedStack, media_server: str, *, enqueued: bool, **fields: Any) -> uuid.UUID:
    """A two-frame job in the stack's database, sent to its workers if `enqueued`."""
    with stack.session_factory.begin() as session:
        key, _plaintext = create_key(session, "commands")
        job = job_repo.create_job(
            session,
            api_key_id=key.id,
            media_url=f"{media_server}/sample.mp4",
            media_type="video",
            requested_metadata=["tags"],
            max_frames=2,
            **fields,
        )
        if enqueued:
            enqueue(session, PROCESS_JOB, str(job.id))
        return job.id


def _job_of(session_factory: Any, plaintext: str) -> uuid.UUID:
    """A finished job of the key (a share link needs one)."""
    with session_factory.begin() as session:
        key = find_active_key(session, hash_key(plaintext))
        assert key is not None
        job = job_repo.create_job(
            session,
            api_key_id=key.id,
            media_url="https://example.com/clip.mp4",
            media_type="video",
            requested_metadata=["tags"],
        )
        job_repo.cancel_job(session, job.id)
        return job.id


def _get(url: str) -> httpx.Response | None:
    try:
        return httpx.get(url, timeout=2)
    except httpx.TransportError:
        return None


def _children(pid: int) -> list[int]:
    return [int(p) for p in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
