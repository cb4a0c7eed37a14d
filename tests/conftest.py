"""Shared fixtures: a migrated PostgreSQL test database, Redis, the worker and the scheduler
started exactly as docker-compose.yml starts them, the API on a real socket, a media server
and a fake VLM, all on 127.0.0.1."""

from __future__ import annotations

import http.server
import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest
import redis
import uvicorn
import yaml
from pydantic import SecretStr
from sqlalchemy import func, select
from sqlalchemy.engine import make_url

from db.keys import create_key
from db.models import Job
from db.session import make_engine, make_session_factory
from migrations.apply import upgrade
from scenecap.cli.sample import SampleScene, write_sample_video
from scenecap.core.enums import JobStatus
from scenecap.core.settings import Settings
from tests.support.clips import spoken_clip
from tests.support.fake_asr import FakeASRServer
from tests.support.fake_vlm import FakeVLMServer

ADMIN_URL = os.environ.get(
    "SCENECAP_TEST_ADMIN_URL", "postgresql://postgres@127.0.0.1:5432/postgres"
)
REDIS_URL = os.environ.get("SCENECAP_TEST_REDIS_URL", "redis://127.0.0.1:6379/15")
TEST_DATABASE = "scenecap_test"
ROOT = Path(__file__).resolve().parent.parent
ARTIFACTS = ROOT / "test-artifacts"
# The console script `pip install` put beside this interpreter: what users run.
SCENECAP = str(Path(sys.executable).parent / "scenecap")


def shipped_command(service: str, **options: str) -> list[str]:
    """A docker-compose.yml service's command, run with this installation's `scenecap`;
    `options` replace the values of the named options (concurrency="1")."""
    command: list[str] = yaml.safe_load((ROOT / "docker-compose.yml").read_text())["services"][
        service
    ]["command"]
    assert command[0] == "scenecap", f"{service} does not run a scenecap command"
    command = [SCENECAP, *command[1:]]
    for name, value in options.items():
        command[command.index(f"--{name}") + 1] = value
    return command


def database_url(name: str) -> str:
    return str(make_url(ADMIN_URL).set(drivername="postgresql+psycopg", database=name))


def recreate_database(name: str) -> str:
    with psycopg.connect(ADMIN_URL, autocommit=True) as connection:
        connection.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        connection.execute(f'CREATE DATABASE "{name}"')
    return database_url(name)


def wait_for(
    predicate: Callable[[], Any], *, timeout: float, interval: float = 0.05, what: str = ""
) -> Any:
    """Poll predicate until it returns something truthy, or fail after timeout seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what or predicate}")
        time.sleep(interval)  # poll interval, bounded by the deadline above


# The spoken clip's tone bursts (start, length, pitch): "alpha" under the first of six even
# frames, "bravo" and "charlie" across the 10-second chunk borders, "delta" under the fifth.
SPOKEN = ((2.2, 0.6, 440), (9.6, 0.8, 660), (19.7, 0.6, 880), (22.0, 1.0, 1100))


# --- media ----------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def media_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("media")
    write_sample_video(folder / "sample.mp4")
    write_sample_video(
        folder / "long.mp4",
        [SampleScene(c, 10.0) for c in ("red", "green", "blue", "yellow")] * 2,
        width=320,
        height=180,
    )
    import cv2
    import numpy as np

    from scenecap.cli.sample import PALETTE

    image = np.empty((240, 320, 3), np.uint8)
    image[:] = PALETTE["purple"]
    cv2.imwrite(str(folder / "purple.jpg"), image)
    cv2.imwrite(str(folder / "purple.png"), image)
    spoken_clip(folder / "spoken.mp4", 30.0, SPOKEN)
    (folder / "page.html").write_text("<!doctype html><html><body>not a video</body></html>")
    (folder / "random.mp4").write_bytes(os.urandom(50_000))
    data = (folder / "sample.mp4").read_bytes()
    (folder / "truncated.mp4").write_bytes(data[: len(data) // 3])
    return folder


class MediaHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        return None

    def do_GET(self) -> None:
        if self.path.startswith("/redirect/"):
            self.send_response(302)
            self.send_header("Location", "/" + self.path.removeprefix("/redirect/"))
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        super().do_GET()


@contextmanager
def serve_http(handler: Callable[..., http.server.BaseHTTPRequestHandler]) -> Iterator[str]:
    """A real HTTP server on 127.0.0.1 (a thread per request); yields its base URL."""
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture(scope="session")
def media_server(media_dir: Path) -> Iterator[str]:
    with serve_http(lambda *args: MediaHandler(*args, directory=str(media_dir))) as url:
        yield url


@pytest.fixture(scope="session")
def s3_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """SeaweedFS, started for the session the first time a test needs S3."""
    from tests.support.seaweedfs import seaweedfs

    with seaweedfs(tmp_path_factory.mktemp("seaweedfs")) as server:
        yield server


@pytest.fixture(scope="session")
def fake_asr_server() -> Iterator[FakeASRServer]:
    server = FakeASRServer().start()
    yield server
    server.stop()


@pytest.fixture
def fake_asr(fake_asr_server: FakeASRServer, fake_vlm: Any) -> Iterator[Any]:
    """The fake speech server, reset (after the fake model saw earlier jobs end)."""
    fake_asr_server.state.reset()
    yield fake_asr_server.state
    assert not fake_asr_server.state.violations, "the worker sent invalid audio requests"
    fake_asr_server.state.reset()


@pytest.fixture(scope="session")
def fake_vlm_server() -> Iterator[FakeVLMServer]:
    server = FakeVLMServer().start()
    yield server
    server.stop()


@pytest.fixture
def fake_vlm(fake_vlm_server: FakeVLMServer, session_factory: Any) -> Iterator[Any]:
    """The fake model, reset, with no job of an earlier test still talking to it."""

    def idle() -> bool:
        active = select(func.count()).where(
            Job.status.in_((JobStatus.PENDING, JobStatus.PROCESSING))
        )
        with session_factory() as session:
            return session.scalar(active) == 0 and fake_vlm_server.state.in_flight == 0

    wait_for(idle, timeout=120, interval=0.1, what="the worker to finish earlier jobs")
    fake_vlm_server.state.reset()
    yield fake_vlm_server.state
    assert not fake_vlm_server.state.violations, "the worker sent invalid requests to the VLM"
    fake_vlm_server.state.reset()


# --- storage, settings, worker, API ---------------------------------------------------------


@pytest.fixture(scope="session")
def settings(
    fake_vlm_server: FakeVLMServer,
    fake_asr_server: FakeASRServer,
    tmp_path_factory: pytest.TempPathFactory,
) -> Settings:
    return Settings(
        environment="test",
        media_store=f"file://{tmp_path_factory.mktemp('store')}",
        database_url=recreate_database(TEST_DATABASE),
        broker_url=REDIS_URL,
        vision_backend="openai",
        vlm_base_url=fake_vlm_server.base_url,
        vlm_model="fake-vlm",
        vlm_models="another-model",
        vlm_max_concurrency=4,
        vlm_max_retries=2,
        asr_backend="openai",
        asr_base_url=fake_asr_server.base_url,
        asr_chunk_seconds=10,
        asr_max_retries=1,
        allow_private_urls=True,
        max_request_bytes=2 * 1024 * 1024,
        image_inline_wait_seconds=20,
        job_lease_seconds=30,
        reaper_interval_seconds=5,
        progress_min_interval_seconds=0.05,
        # Segment mode spread thin: the 80-second clip's scene detection in four chunks, and
        # its segments in tasks of three.
        scene_chunk_seconds=20,
        segments_per_task=3,
        # Three attempts, each in a new second (webhook-timestamp has one-second resolution).
        webhook_retry_schedule="0,1.1,1.1",
        webhook_timeout_seconds=1.5,
        # On, but far above what the tests' 20-per-second polling reaches (test_limits lowers it).
        rate_limit_per_minute=100_000,
        share_rate_limit_per_minute=100_000,
        # Limits low enough for test_hostile_media to cross them cheaply.
        max_media_bytes=64 * 1024 * 1024,
        fetch_timeout_seconds=8,
        max_duration_seconds=120,
        max_input_pixels=1920 * 1088,
        # The worker logs JSON, as it would for a log shipper; test_logging reads it.
        log_format="json",
        secret_key=SecretStr("test-secret-key-" + "x" * 32),
    )


def settings_env(settings: Settings) -> dict[str, str]:
    """The environment that gives a child process these settings."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("SCENECAP_")}
    for name, value in settings.model_dump().items():
        if value is None:
            continue
        if isinstance(value, SecretStr):
            value = value.get_secret_value()
        env[f"SCENECAP_{name.upper()}"] = (
            str(value).lower() if isinstance(value, bool) else str(value)
        )
    return env


@pytest.fixture(scope="session")
def database(settings: Settings) -> str:
    upgrade(settings.database_url)
    return settings.database_url


@pytest.fixture(scope="session")
def session_factory(database: str) -> Iterator[Any]:
    engine = make_engine(database)
    yield make_session_factory(engine)
    engine.dispose()


@pytest.fixture(scope="session")
def worker_log(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("worker") / "worker.log"


@pytest.fixture(scope="session")
def worker_tmp(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The worker's TMPDIR, so tests can see that it leaves no temp files behind."""
    return tmp_path_factory.mktemp("worker-tmp")


@pytest.fixture(scope="session")
def worker(
    settings: Settings, database: str, worker_log: Path, worker_tmp: Path
) -> Iterator[subprocess.Popen[bytes]]:
    """`scenecap worker` (prefork, 2 children) and `scenecap beat`, as docker-compose.yml
    runs them, on the test database and Redis DB; both log to worker_log."""
    redis.Redis.from_url(REDIS_URL).flushdb()
    log = worker_log.open("wb")
    # Each its own TMPDIR: the worker's must hold nothing once its jobs end (a test looks);
    # the scheduler keeps its schedule file in its own.
    beat_tmp = worker_tmp.with_name("beat-tmp")
    beat_tmp.mkdir(exist_ok=True)
    processes = [
        subprocess.Popen(
            shipped_command(service),
            env={**settings_env(settings), "TMPDIR": str(tmp)},
            stdout=log,
            stderr=subprocess.STDOUT,
            cwd=ROOT,
            start_new_session=True,
        )
        for service, tmp in (("worker", worker_tmp), ("beat", beat_tmp))
    ]
    process, beat = processes
    wait_for(
        lambda: "ready." in worker_log.read_text(errors="replace") or process.poll() is not None,
        timeout=60,
        what="the worker to be ready",
    )
    assert process.poll() is None and beat.poll() is None, worker_log.read_text()
    yield process
    for child in processes:
        os.killpg(child.pid, signal.SIGTERM)
    for child in processes:
        try:
            child.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(child.pid, signal.SIGKILL)
    log.close()
    ARTIFACTS.mkdir(exist_ok=True)
    shutil.copy(worker_log, ARTIFACTS / "worker.log")


class ThreadedServer(uvicorn.Server):
    def install_signal_handlers(self) -> None:
        return None


@contextmanager
def serve_app(app: Any) -> Iterator[str]:
    """Serve an ASGI app with uvicorn on a free port of 127.0.0.1, in a thread; yield its URL."""
    server = ThreadedServer(uvicorn.Config(app, host="127.0.0.1", port=0, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    wait_for(lambda: server.started, timeout=30, what="uvicorn to start")
    port = server.servers[0].sockets[0].getsockname()[1]
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)


@pytest.fixture(scope="session")
def api_url(settings: Settings, database: str) -> Iterator[str]:
    """The API served by uvicorn on a real socket, in a thread of the test process."""
    from api.main import create_app

    with serve_app(create_app(settings)) as url:
        yield url


@pytest.fixture
def new_key(session_factory: Any) -> Callable[[], str]:
    """Make API keys; each test gets keys of its own, so tests never see each other's jobs."""

    def make() -> str:
        with session_factory.begin() as session:
            _key, plaintext = create_key(session, "test")
        return plaintext

    return make


@contextmanager
def app_client(settings: Settings, key: str, **changes: Any) -> Iterator[tuple[Any, httpx.Client]]:
    """Another API instance with some settings changed: the app, and a client of the key."""
    from api.main import create_app

    app = create_app(settings.model_copy(update=changes))
    with (
        serve_app(app) as url,
        httpx.Client(
            base_url=url, headers={"Authorization": f"Bearer {key}"}, timeout=30
        ) as client,
    ):
        yield app, client
        cancel_unfinished(client)


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    """Debian's Chromium, headless (scripts/ensure-services.sh installs it; no downloaded
    browser), driven by Playwright."""
    from playwright.sync_api import sync_playwright

    chromium = shutil.which("chromium") or "/usr/bin/chromium"
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(
            executable_path=chromium, args=["--no-sandbox", "--disable-dev-shm-usage"]
        )
        yield launched
        launched.close()


def cancel_unfinished(http_client: httpx.Client) -> None:
    """Cancel the jobs this client left running, so they do not load the worker in later tests."""
    for status in ("PENDING", "PROCESSING"):
        listed = http_client.get("/v2/media/categories", params={"status": status, "limit": 100})
        for job in listed.json().get("data", []):
            http_client.delete(f"/v2/media/categories/{job['job_id']}")


@contextmanager
def client_for(api_url: str, key: str) -> Iterator[httpx.Client]:
    """An API client for one key; the jobs it leaves running are cancelled afterwards."""
    headers = {"Authorization": f"Bearer {key}"}
    with httpx.Client(base_url=api_url, headers=headers, timeout=60) as http_client:
        yield http_client
        cancel_unfinished(http_client)


@pytest.fixture
def client(api_url: str, new_key: Callable[[], str]) -> Iterator[httpx.Client]:
    with client_for(api_url, new_key()) as http_client:
        yield http_client


@pytest.fixture
def other_client(api_url: str, new_key: Callable[[], str]) -> Iterator[httpx.Client]:
    with client_for(api_url, new_key()) as http_client:
        yield http_client


def poll_job(
    client: httpx.Client,
    job_id: str,
    *,
    until: Callable[[dict[str, Any]], bool],
    timeout: float = 120,
) -> dict[str, Any]:
    """GET the job until `until` holds; return that state."""
    state: dict[str, Any] = {}

    def check() -> bool:
        nonlocal state
        response = client.get(f"/v2/media/categories/{job_id}")
        assert response.status_code == 200, response.text
        state = response.json()
        return until(state)

    wait_for(check, timeout=timeout, interval=0.05, what=f"job {job_id}")
    return state


def is_terminal(job: dict[str, Any]) -> bool:
    return job["status"] in ("COMPLETED", "FAILED", "CANCELLED")


# --- worker log: a test fails if the worker logged an ERROR during it, unless it expects one ---


@pytest.fixture(autouse=True)
def no_worker_errors(request: pytest.FixtureRequest, worker_log: Path) -> Iterator[None]:
    start = worker_log.stat().st_size if worker_log.exists() else 0
    yield
    if request.node.get_closest_marker("worker_errors_expected") or not worker_log.exists():
        return
    with worker_log.open("rb") as log:
        log.seek(start)
        new = log.read().decode(errors="replace")
    errors = [line for line in new.splitlines() if _logged_level(line) in ("ERROR", "CRITICAL")]
    assert not errors, "the worker logged errors:\n" + "\n".join(errors[:10])


def _logged_level(line: str) -> str | None:
    try:
        entry = json.loads(line)
    except ValueError:  # Not a log record (Celery's start-up banner is printed directly).
        return "ERROR" if "ERROR/" in line or "Traceback" in line else None
    return entry.get("level") if isinstance(entry, dict) else None


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "worker_errors_expected: the test provokes worker ERROR logs"
    )
    config.addinivalue_line(
        "markers",
        "integration: needs PostgreSQL, Redis or the worker (pytest -m 'not integration' "
        "runs the rest alone)",
    )


# A test that uses any of these (or a fixture built on them) talks to PostgreSQL, Redis or
# the worker: `settings` creates the test database, and everything else stands on it.
INFRASTRUCTURE = frozenset({"settings", "database", "session_factory", "worker", "api_url"})


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if INFRASTRUCTURE & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.integration)
