"""Load benchmark: `make bench-load` (python -m bench.load).

The real stack on this machine: the API (uvicorn, its own process), a Celery worker and
the fake VLM (its own process), PostgreSQL and Redis (a database and a Redis db of their
own). C concurrent clients each loop: submit a short video (2 frames), poll it every
100 ms until it ends. Reported per C: POST and GET requests/s with p50/p99 latency, jobs
finished per second, and GET /healthz latency measured alongside, the floor of the HTTP
stack, so `GET job / healthz` says what our own work costs on top of it.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import http.server
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import psycopg
import redis

from bench.captioning import fake_vlm
from db.keys import create_key
from db.session import make_engine, make_session_factory
from migrations.apply import upgrade
from scenecap.cli.dev import worker_command
from scenecap.cli.sample import write_sample_video

ROOT = Path(__file__).resolve().parent.parent
ADMIN_URL = os.environ.get(
    "SCENECAP_TEST_ADMIN_URL", "postgresql://postgres@127.0.0.1:5432/postgres"
)
DATABASE = "postgresql+psycopg://postgres@127.0.0.1:5432/scenecap_bench"
BROKER = "redis://127.0.0.1:6379/13"


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))] if ordered else 0.0


@contextlib.contextmanager
def media_server(folder: Path) -> Iterator[str]:
    handler = type(
        "Quiet", (http.server.SimpleHTTPRequestHandler,), {"log_message": lambda *a: None}
    )
    # Quiet about clients that hang up early too: the API's media check reads only the start.
    quiet_server = type(
        "QuietServer", (http.server.ThreadingHTTPServer,), {"handle_error": lambda *a: None}
    )
    server = quiet_server(("127.0.0.1", 0), lambda *a: handler(*a, directory=str(folder)))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


@contextlib.contextmanager
def stack(vlm_url: str, folder: Path) -> Iterator[tuple[str, dict[str, str]]]:
    """Migrated database, worker and API; yields (API URL, environment)."""
    with psycopg.connect(ADMIN_URL, autocommit=True) as connection:
        connection.execute("DROP DATABASE IF EXISTS scenecap_bench WITH (FORCE)")
        connection.execute("CREATE DATABASE scenecap_bench")
    redis.Redis.from_url(BROKER).flushdb()
    upgrade(DATABASE)
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("SCENECAP_")},
        "SCENECAP_DATABASE_URL": DATABASE,
        "SCENECAP_BROKER_URL": BROKER,
        "SCENECAP_VISION_BACKEND": "openai",
        "SCENECAP_VLM_BASE_URL": vlm_url,
        "SCENECAP_ALLOW_PRIVATE_URLS": "true",
        "SCENECAP_RATE_LIMIT_PER_MINUTE": "1000000",
        "SCENECAP_LOG_LEVEL": "WARNING",
    }
    log = (ROOT / "bench" / ".cache" / "load-stack.log").open("wb")
    worker = subprocess.Popen(
        worker_command(folder / "beat", concurrency=2), env=env, cwd=ROOT, stdout=log, stderr=log
    )
    port = 18000 + os.getpid() % 1000
    api = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "scenecap.cli.main",
            "api",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
        ],
        env=env,
        cwd=ROOT,
        stdout=log,
        stderr=log,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            with contextlib.suppress(httpx.TransportError):
                if httpx.get(f"{url}/readyz").status_code == 200:
                    break
            if time.monotonic() > deadline:
                raise RuntimeError("the stack did not come up; see bench/.cache/load-stack.log")
            time.sleep(0.2)  # start-up poll
        yield url, env
    finally:
        for process in (api, worker):
            process.terminate()
            process.wait(timeout=30)


async def client(
    url: str,
    key: str,
    media: str,
    until: float,
    samples: dict[str, list[float]],
    errors: list[str],
) -> int:
    """One user: submit, poll to the end, repeat until `until`; returns jobs finished."""
    finished = 0
    headers = {"Authorization": f"Bearer {key}"}
    async with httpx.AsyncClient(base_url=url, headers=headers, timeout=60) as http:
        while time.monotonic() < until:
            started = time.perf_counter()
            response = await http.post(
                "/v2/media/categories", json={"media_url": media, "max_frames": 2}
            )
            samples["post"].append(time.perf_counter() - started)
            if response.status_code != 202:
                errors.append(f"POST {response.status_code}: {response.text[:120]}")
                continue
            job_id = response.json()["job_id"]
            while True:
                await asyncio.sleep(0.1)  # the client's polling interval
                started = time.perf_counter()
                reply = await http.get(f"/v2/media/categories/{job_id}")
                samples["get"].append(time.perf_counter() - started)
                if reply.status_code != 200:
                    errors.append(f"GET {reply.status_code}: {reply.text[:120]}")
                    continue
                job = reply.json()
                started = time.perf_counter()
                await http.get("/healthz")
                samples["healthz"].append(time.perf_counter() - started)
                if job["status"] in ("COMPLETED", "FAILED", "CANCELLED"):
                    finished += job["status"] == "COMPLETED"
                    break
    return finished


@dataclass
class LoadResult:
    samples: dict[str, list[float]]
    elapsed: float
    jobs: int
    errors: list[str]

    def row(self, clients: int) -> str:
        post, get, floor = self.samples["post"], self.samples["get"], self.samples["healthz"]
        cells = [
            str(clients),
            f"{len(post) / self.elapsed:.1f}",
            f"{statistics.median(post) * 1000:.1f} ms",
            f"{percentile(post, 0.99) * 1000:.1f} ms",
            f"{len(get) / self.elapsed:.1f}",
            f"{statistics.median(get) * 1000:.1f} ms",
            f"{percentile(get, 0.99) * 1000:.1f} ms",
            f"{statistics.median(floor) * 1000:.1f} ms",
            f"{statistics.median(get) / statistics.median(floor):.2f}x",
            f"{self.jobs / self.elapsed:.2f}",
            str(len(self.errors)),
        ]
        return "| " + " | ".join(cells) + " |"


async def run_load(url: str, keys: list[str], media: str, seconds: float) -> LoadResult:
    samples: dict[str, list[float]] = {"post": [], "get": [], "healthz": []}
    errors: list[str] = []
    until = time.monotonic() + seconds
    started = time.monotonic()
    done = await asyncio.gather(*(client(url, key, media, until, samples, errors) for key in keys))
    return LoadResult(samples, time.monotonic() - started, sum(done), errors)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--clients", default="4,16,64", help="comma-separated client counts")
    parser.add_argument("--seconds", type=float, default=20.0, help="per client count")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="scenecap-load-") as name:
        folder = Path(name)
        write_sample_video(folder / "sample.mp4")
        with (
            fake_vlm(0.05) as vlm_url,
            media_server(folder) as media_url,
            stack(vlm_url, folder) as (url, _env),
        ):
            factory = make_session_factory(make_engine(DATABASE))
            print("# scenecap load benchmark (API + worker concurrency 2 + fake VLM, L=50 ms)\n")
            print(
                "| clients | POST/s | POST p50 | POST p99 | GET/s | GET p50 | GET p99 "
                "| healthz p50 | GET p50 / healthz p50 | jobs/s | errors |"
            )
            print("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |")
            for count in (int(c) for c in args.clients.split(",")):
                keys = []
                with factory.begin() as session:
                    for _ in range(count):
                        keys.append(create_key(session, "load")[1])
                result = asyncio.run(run_load(url, keys, f"{media_url}/sample.mp4", args.seconds))
                print(result.row(count))
                for error in sorted(set(result.errors))[:5]:
                    print(f"    error: {error}")


if __name__ == "__main__":
    main()
