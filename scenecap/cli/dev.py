"""`scenecap dev` and `scenecap demo`: the whole service on one machine, no external services.

SQLite file, kombu's filesystem broker and the `local` vision backend, all under
~/.scenecap unless SCENECAP_* says otherwise; the API and one worker run as child processes.
"""

from __future__ import annotations

import contextlib
import http.server
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import httpx

from db.keys import find_active_key, hash_key
from scenecap.cli.database import transaction
from scenecap.cli.keys import issue_key
from scenecap.cli.output import summary
from scenecap.cli.query import save_report
from scenecap.core.errors import PortInUse, ServiceUnavailable
from scenecap.core.settings import get_settings

# The children run this installation's own `scenecap` command.
SCENECAP = [sys.executable, "-m", "scenecap.cli.main"]
# Dev may fetch media from 127.0.0.1 (the demo serves its sample there); production may not.
DEV_KEY_FILE = "dev-key.json"
_DEV_DEFAULTS = {"SCENECAP_ALLOW_PRIVATE_URLS": "true", "SCENECAP_ENVIRONMENT": "development"}


@dataclass(frozen=True)
class DevKey:
    key: str
    webhook_secret: str


@contextmanager
def dev_stack(
    host: str, port: int, *, new_key: bool = False
) -> Iterator[tuple[str, DevKey, dict[str, subprocess.Popen[bytes]]]]:
    """Start migrated storage, a worker and the API; yield the base URL, the dev API key (the
    one of the last start while it is valid, unless `new_key`) and the two child processes."""
    for name, value in _DEV_DEFAULTS.items():
        os.environ.setdefault(name, value)
    get_settings.cache_clear()
    settings = get_settings()
    _check_free(host, port)

    from migrations.apply import upgrade

    upgrade(settings.database_url)
    home = Path(settings.embedded_broker_dir).parent
    home.mkdir(parents=True, exist_ok=True)
    key = dev_key(settings.database_url, home / DEV_KEY_FILE, new=new_key)
    # Child output goes to a log file: the terminal (and `demo`'s JSON on stdout) stays clean.
    log = (home / "dev.log").open("ab")
    worker = subprocess.Popen(
        worker_command(home / "beat-schedule", concurrency=1), stdout=log, stderr=log
    )
    api = subprocess.Popen(
        [*SCENECAP, "api", "--host", host, "--port", str(port)], stdout=log, stderr=log
    )
    base_url = f"http://{host}:{port}"
    try:
        _wait_until_healthy(base_url, api, home / "dev.log")
        yield base_url, key, {"API": api, "worker": worker}
    finally:
        log.close()
        for process in (api, worker):
            process.terminate()
        for process in (api, worker):
            try:
                process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                process.kill()


def dev_key(database_url: str, path: Path, *, new: bool) -> DevKey:
    """The key `dev` printed last time (kept in `path`, readable by its owner only) while it
    is not revoked; else a new one, kept there for the next start. A key per start would
    hide the user's jobs after each restart and fill `keys list` with keys named dev."""
    if not new and path.exists():
        with contextlib.suppress(ValueError, KeyError, TypeError):
            kept = json.loads(path.read_text())
            with transaction(database_url) as session:
                if find_active_key(session, hash_key(kept["key"])) is not None:
                    return DevKey(kept["key"], kept["webhook_secret"])
    plaintext, secret = issue_key(database_url, "dev")
    partial = path.with_name(path.name + ".partial")
    partial.touch(mode=0o600)
    partial.write_text(json.dumps({"key": plaintext, "webhook_secret": secret}))
    partial.replace(path)
    return DevKey(plaintext, secret)


def _check_free(host: str, port: int) -> None:
    """Refuse a port something already listens on, before printing a URL another server
    would answer."""
    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError as exc:
            raise PortInUse(
                f"cannot listen on {host}:{port} ({exc.strerror or exc}); "
                "stop what uses it, or pick another port with --port"
            ) from None


def worker_command(beat_schedule: Path, *, concurrency: int) -> list[str]:
    """`scenecap worker` on both queues with beat in-process (one machine, no separate beat)."""
    return [
        *SCENECAP, "worker", "--queues", "media,webhooks", "--concurrency", str(concurrency),
        "--beat", "--schedule", str(beat_schedule),
    ]  # fmt: skip


def run_dev(host: str, port: int, *, new_key: bool = False) -> int:
    """Run until Ctrl-C or SIGTERM (then stop both children), after printing where the API
    is and a key to use; exit 1 if a child dies on its own."""
    stop = threading.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda _signum, _frame: stop.set())
    with dev_stack(host, port, new_key=new_key) as (base_url, dev, children):
        key = dev.key
        print(f"scenecap is running at {base_url}  (API docs: {base_url}/docs)")
        print(f"API key: {key}  (kept for the next start; --new-key for another)")
        print(f"Webhook signing secret: {dev.webhook_secret}")
        print(f"Try: curl -H 'Authorization: Bearer {key}' {base_url}/v2/media/categories")
        print(f"Logs: {get_settings().embedded_broker_dir.parent / 'dev.log'}", flush=True)
        while not stop.wait(1.0):
            exited = [name for name, child in children.items() if child.poll() is not None]
            if exited:
                print(f"scenecap: error: the {exited[0]} exited; see the log", file=sys.stderr)
                return 1
        print("stopping", flush=True)
    return 0


def run_demo(port: int, *, as_json: bool = False) -> int:
    """Analyse a generated sample video end to end; print a short summary and where its
    report page was written (or, `as_json`, the finished job)."""
    from scenecap.cli.sample import write_sample_video

    with tempfile.TemporaryDirectory(prefix="scenecap-demo-") as folder:
        write_sample_video(Path(folder) / "sample.mp4")
        with (
            _serve_folder(folder) as media_base,
            dev_stack("127.0.0.1", port) as (base_url, key, _children),
        ):
            job = _submit_and_wait(base_url, key.key, f"{media_base}/sample.mp4")
            page = get_settings().embedded_broker_dir.parent / "demo-report.html"
            if job["status"] == "COMPLETED":
                save_report(base_url, key.key, job["job_id"], page)
    if as_json:
        print(json.dumps(job, indent=2))
    else:
        print(summary(job, frames=False))
        if job["status"] == "COMPLETED":
            print(f"\nThe report, with every frame: {page.as_uri()}")
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


def _wait_until_healthy(base_url: str, api: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if api.poll() is not None:
            raise ServiceUnavailable(
                f"the API exited with code {api.returncode} (is {base_url} in use?); see {log}"
            )
        try:
            if httpx.get(f"{base_url}/healthz", timeout=1).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.2)  # poll until healthy, bounded by the deadline above
    raise ServiceUnavailable(f"the API did not become healthy within 60 s; see {log}")
