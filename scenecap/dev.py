"""`scenecap dev` and `scenecap demo`: the whole service on one machine, no external services.

SQLite file, kombu's filesystem broker and the `local` vision backend, all under
~/.scenecap unless SCENECAP_* says otherwise; the API and one worker run as child processes.
"""

from __future__ import annotations

import http.server
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from functools import partial
from pathlib import Path
from typing import Any

import httpx

from scenecap.cli import issue_key
from scenecap.settings import get_settings

# Dev may fetch media from 127.0.0.1 (the demo serves its sample there); production may not.
_DEV_DEFAULTS = {"SCENECAP_ALLOW_PRIVATE_URLS": "true", "SCENECAP_ENVIRONMENT": "development"}


@contextmanager
def dev_stack(host: str, port: int) -> Iterator[tuple[str, str]]:
    """Start migrated storage, a worker and the API; yield (base URL, a fresh API key)."""
    for name, value in _DEV_DEFAULTS.items():
        os.environ.setdefault(name, value)
    get_settings.cache_clear()
    settings = get_settings()

    from db.migrate import upgrade

    upgrade(settings.database_url)
    key, _secret = issue_key("dev")
    home = Path(settings.embedded_broker_dir).parent
    home.mkdir(parents=True, exist_ok=True)
    # Child output goes to a log file: the terminal (and `demo`'s JSON on stdout) stays clean.
    log = (home / "dev.log").open("ab")
    worker = subprocess.Popen(
        worker_command(home / "beat-schedule", concurrency=1), stdout=log, stderr=log
    )
    api = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "uvicorn",
            "api.main:create_app",
            "--factory",
            "--host",
            host,
            "--port",
            str(port),
            "--log-level",
            "info",
        ],
        stdout=log,
        stderr=log,
    )
    base_url = f"http://{host}:{port}"
    try:
        _wait_until_healthy(base_url, api)
        yield base_url, key
    finally:
        log.close()
        for process in (api, worker):
            process.terminate()
        for process in (api, worker):
            try:
                process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                process.kill()


def worker_command(beat_schedule: Path, *, concurrency: int) -> list[str]:
    """A Celery worker on both queues with beat in-process (one machine, no separate beat)."""
    return [
        sys.executable, "-m", "celery", "-A", "worker.celery_app", "worker",
        "--beat", "--schedule", str(beat_schedule),
        "--queues", "media,webhooks", "--concurrency", str(concurrency), "--loglevel", "INFO",
    ]  # fmt: skip


def run_dev(host: str, port: int) -> int:
    """Run until interrupted, after printing where the API is and a key to use."""
    with dev_stack(host, port) as (base_url, key):
        print(f"scenecap is running at {base_url}  (API docs: {base_url}/docs)")
        print(f"API key: {key}")
        print(f"Try: curl -H 'Authorization: Bearer {key}' {base_url}/v2/media/categories")
        print(f"Logs: {get_settings().embedded_broker_dir.parent / 'dev.log'}")
        try:
            while True:
                time.sleep(3600)
        except KeyboardInterrupt:
            print("stopping")
    return 0


def run_demo(port: int) -> int:
    """Analyse a generated sample video end to end and print the finished job as JSON."""
    from scenecap.sample import write_sample_video

    with tempfile.TemporaryDirectory(prefix="scenecap-demo-") as folder:
        write_sample_video(Path(folder) / "sample.mp4")
        with _serve_folder(folder) as media_base, dev_stack("127.0.0.1", port) as (base_url, key):
            job = _submit_and_wait(base_url, key, f"{media_base}/sample.mp4")
    print(json.dumps(job, indent=2))
    return 0 if job["status"] == "COMPLETED" else 1


def _submit_and_wait(base_url: str, key: str, media_url: str) -> dict[str, Any]:
    headers = {"Authorization": f"Bearer {key}"}
    with httpx.Client(base_url=base_url, headers=headers, timeout=30) as client:
        created = client.post("/v2/media/categories", json={"media_url": media_url})
        created.raise_for_status()
        job_id = created.json()["job_id"]
        print(f"submitted job {job_id}", file=sys.stderr)
        deadline = time.monotonic() + 600
        while time.monotonic() < deadline:
            job: dict[str, Any] = client.get(f"/v2/media/categories/{job_id}").json()
            print(
                f"  {job['status']:<10} {job['stage']:<18} {job['percent_complete']:>3}%",
                file=sys.stderr,
            )
            if job["status"] in ("COMPLETED", "FAILED", "CANCELLED"):
                return job
            time.sleep(0.5)
    raise TimeoutError(f"job {job_id} did not finish in 10 minutes")


@contextmanager
def _serve_folder(folder: str) -> Iterator[str]:
    handler = partial(_QuietHandler, directory=folder)
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        return None


def _wait_until_healthy(base_url: str, api: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if api.poll() is not None:
            raise RuntimeError(f"the API exited with code {api.returncode}")
        try:
            if httpx.get(f"{base_url}/healthz", timeout=1).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.2)
    raise TimeoutError("the API did not become healthy within 60 s")
