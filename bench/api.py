"""API throughput: `make bench-api` (python -m bench.api [--workers N]).

`scenecap api` (one process, or N) on PostgreSQL and Redis, no worker running, driven by wrk
from Debian's packages (C, so the load generator is not the bottleneck) with 8 connections
for 10 s per endpoint, each in the same run:

- GET /healthz: the floor of the HTTP stack (uvicorn, routing, JSON);
- GET /v2/media/categories/{id}: a completed 24-frame job (about 10 KB of JSON);
- GET /v2/media/categories: the list (20 jobs);
- POST /v2/media/categories with a 36 KB data: video (stored, queued, never processed).

`--sqlite` runs it all on SQLite, as `scenecap api` runs with no DATABASE_URL.

Each row prints requests/s, p50 and p99 latency, and its throughput as a share of /healthz
(absolute figures drift on a shared machine; ratios measured together hold).
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import psycopg
import redis

from db import frames as frame_repo
from db import jobs as job_repo
from db.keys import create_key
from db.session import make_engine, make_session_factory
from migrations.apply import upgrade
from scenecap.cli.sample import SampleScene, write_sample_video
from scenecap.core.enums import JobStatus

ROOT = Path(__file__).resolve().parent.parent
ADMIN_URL = os.environ.get(
    "SCENECAP_TEST_ADMIN_URL", "postgresql://postgres@127.0.0.1:5432/postgres"
)
DATABASE = "postgresql+psycopg://postgres@127.0.0.1:5432/scenecap_bench_api"
BROKER = "redis://127.0.0.1:6379/11"
CONNECTIONS, SECONDS = 8, 10


@dataclass(frozen=True)
class Row:
    name: str
    per_second: float
    p50_ms: float
    p99_ms: float
    errors: int


def prepare(database: str = DATABASE) -> tuple[str, str, str]:
    """A fresh database with a key, 40 jobs and one completed 24-frame job; returns
    (key, the job's id, a POST body with a 36 KB data: video)."""
    if database == DATABASE:
        with psycopg.connect(ADMIN_URL, autocommit=True) as connection:
            connection.execute("DROP DATABASE IF EXISTS scenecap_bench_api WITH (FORCE)")
            connection.execute("CREATE DATABASE scenecap_bench_api")
    redis.Redis.from_url(BROKER).flushdb()
    upgrade(database)
    engine = make_engine(database)
    with make_session_factory(engine).begin() as session:
        key, plaintext = create_key(session, "bench")
        for _ in range(40):
            job_repo.create_job(
                session,
                api_key_id=key.id,
                media_url="https://example.com/clip.mp4",
                media_type="video",
                requested_metadata=["categories", "tags"],
            )
        job = job_repo.create_job(
            session,
            api_key_id=key.id,
            media_url="https://example.com/match.mp4",
            media_type="video",
            requested_metadata=["categories", "participants", "actions", "scene", "tags"],
            status=JobStatus.PROCESSING,
        )
        results = completed_results(24)
        for stage, seconds in (("downloading", 0.4), ("extracting_frames", 1.0)):
            frame_repo.record_stage_time(session, job.id, stage, seconds)
        job_repo.complete_job(session, job.id, results=results, usage={"frames": 24})
        job_id = str(job.id)
    engine.dispose()
    return plaintext, job_id, sample_body()


def sample_body() -> str:
    """A submission of a 36 KB data: video (stored and queued; no URL to check)."""
    with tempfile.TemporaryDirectory() as folder:
        video = write_sample_video(
            Path(folder) / "clip.mp4",
            [SampleScene(c, 1.0) for c in ("red", "green", "blue")],
            width=320,
            height=180,
        )
        data = base64.b64encode(video.read_bytes()).decode()
    return json.dumps({"media_url": f"data:video/mp4;base64,{data}", "max_frames": 4})


def completed_results(frames: int) -> dict[str, object]:
    """What a 24-frame job's results look like (about 10 KB of JSON)."""
    names = ["sports", "outdoor", "crowd", "running", "stadium", "ball"]
    frame_list = [
        {
            "index": i,
            "timestamp": round(1.25 + 2.5 * i, 3),
            "caption": f"A player in a red jersey runs across the pitch in shot {i}.",
            "categories": ["sports"],
            "participants": ["man in red jersey"],
            "actions": ["running"],
            "scene": "outdoor stadium",
            "tags": ["football", "crowd"],
        }
        for i in range(frames)
    ]
    merged = [
        {"name": n, "count": frames, "timestamps": [f["timestamp"] for f in frame_list]}
        for n in names
    ]
    return {
        "description": "A football match in a full stadium.",
        "categories": merged[:1],
        "participants": merged[1:2],
        "actions": merged[3:4],
        "scene": merged[4:5],
        "tags": merged[5:],
        "frames": frame_list,
    }


@contextlib.contextmanager
def api(
    workers: int, database: str = DATABASE, extra: dict[str, str] | None = None
) -> Iterator[str]:
    """`scenecap api` as shipped, on `database`, with `extra` settings; yields its URL."""
    port = 19000 + os.getpid() % 1000
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("SCENECAP_")},
        "SCENECAP_DATABASE_URL": database,
        "SCENECAP_BROKER_URL": BROKER,
        "SCENECAP_ALLOW_PRIVATE_URLS": "true",
        # Counted as always (in Redis; active jobs under the key's lock), but never reached:
        # no worker runs, so the submissions pile up.
        "SCENECAP_RATE_LIMIT_PER_MINUTE": "1000000000",
        "SCENECAP_MAX_ACTIVE_JOBS_PER_KEY": "1000000000",
        **(extra or {}),
    }
    command = [sys.executable, "-m", "scenecap.cli.main", "api", "--host", "127.0.0.1"]
    command += ["--port", str(port), "--workers", str(workers)]
    log = (ROOT / "bench" / ".cache" / "api-bench.log").open("wb")
    process = subprocess.Popen(command, env=env, cwd=ROOT, stdout=log, stderr=log)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            with contextlib.suppress(httpx.TransportError):
                if httpx.get(f"{url}/readyz", timeout=2).status_code == 200:
                    break
            if time.monotonic() > deadline or process.poll() is not None:
                raise RuntimeError("the API did not start; see bench/.cache/api-bench.log")
            time.sleep(0.2)
        yield url
    finally:
        process.terminate()
        process.wait(timeout=30)
        log.close()


def wrk(url: str, script: str | None = None, seconds: int = SECONDS) -> Row:
    command = ["wrk", "-t", "2", "-c", str(CONNECTIONS), "-d", f"{seconds}s", "--latency"]
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as lua:
        lua.write(script or "")
    try:
        done = subprocess.run([*command, "-s", lua.name, url], capture_output=True, text=True)
    finally:
        os.unlink(lua.name)
    out = done.stdout
    rate = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]
    errors = sum(int(n) for n in re.findall(r"Non-2xx or 3xx responses: (\d+)", out))
    errors += sum(int(n) for n in re.findall(r"(?:connect|read|write|timeout) (\d+)", out))
    return Row(url, rate, _latency(out, "50%"), _latency(out, "99%"), errors)


def _latency(out: str, label: str) -> float:
    value, unit = re.search(rf"{label}\s+([\d.]+)(us|ms|s)", out).groups()  # type: ignore[union-attr]
    return float(value) * {"us": 0.001, "ms": 1.0, "s": 1000.0}[unit]


def lua(key: str, body: str | None = None) -> str:
    lines = [f'wrk.headers["Authorization"] = "Bearer {key}"']
    if body is not None:
        lines += [
            'wrk.method = "POST"',
            'wrk.headers["Content-Type"] = "application/json"',
            f"wrk.body = {json.dumps(body)}",
        ]
    return "\n".join(lines) + "\n"


def run(workers: int, log_level: str | None = None, database: str = DATABASE) -> list[Row]:
    key, job_id, body = prepare(database)
    extra = {"SCENECAP_LOG_LEVEL": log_level} if log_level else None
    with api(workers, database, extra) as url:
        wrk(f"{url}/v2/media/categories/{job_id}", lua(key), seconds=2)  # warm the pools
        rows = [
            ("GET /healthz", wrk(f"{url}/healthz")),
            ("GET job (24 frames)", wrk(f"{url}/v2/media/categories/{job_id}", lua(key))),
            ("GET list (20 jobs)", wrk(f"{url}/v2/media/categories", lua(key))),
            ("POST 36 KB data: video", wrk(f"{url}/v2/media/categories", lua(key, body))),
        ]
    return [Row(name, r.per_second, r.p50_ms, r.p99_ms, r.errors) for name, r in rows]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workers", type=int, default=1, help="API processes (uvicorn --workers)")
    parser.add_argument(
        "--log-level", default=None, help="LOG_LEVEL for the API (default: as shipped, INFO)"
    )
    parser.add_argument(
        "--sqlite",
        action="store_true",
        help="on SQLite, as `scenecap api` runs with no DATABASE_URL (default: PostgreSQL)",
    )
    args = parser.parse_args()
    if shutil.which("wrk") is None:
        sys.exit(
            "wrk is not installed: run scripts/ensure-services.sh --bench (make bench-api does)"
        )
    (ROOT / "bench" / ".cache").mkdir(exist_ok=True)
    database = DATABASE
    if args.sqlite:
        database = f"sqlite:///{tempfile.mkdtemp(prefix='scenecap-bench-api-')}/bench.db"
    rows = run(args.workers, args.log_level, database)
    floor = rows[0].per_second
    logs = f"LOG_LEVEL={args.log_level}" if args.log_level else "access logs on (as shipped)"
    on = "SQLite" if args.sqlite else "PostgreSQL"
    print(f"\nscenecap api --workers {args.workers} on {on}, {logs}; wrk -c {CONNECTIONS}\n")
    print("| endpoint | req/s | p50 | p99 | share of /healthz | non-2xx/errors |")
    print("| --- | --- | --- | --- | --- | --- |")
    for row in rows:
        print(
            f"| {row.name} | {row.per_second:,.0f} | {row.p50_ms:.1f} ms | {row.p99_ms:.1f} ms "
            f"| {row.per_second / floor:.2f}x | {row.errors} |"
        )


if __name__ == "__main__":
    main()
