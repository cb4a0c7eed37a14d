"""Reuse: `make bench-cost` (python -m bench.cost [--latency L]).

The real stack (`scenecap api`, `scenecap worker`, PostgreSQL, Redis, the fake VLM in its own
process with latency L) and the cached 10-minute 720p video served over HTTP. The same
request is submitted twice by one key: the second job reuses the first one's captions. Printed:
each job's wall time (POST to COMPLETED) and the model calls it made, and the second's share of
the first's time (target: 0 calls, at most 10 %).
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

from bench.captioning import fake_vlm, stats
from bench.load import DATABASE, media_server, stack
from bench.videos import ensure_video
from db.keys import create_key
from db.session import make_engine, make_session_factory


def timed_job(
    client: httpx.Client, body: dict[str, Any], vlm: str
) -> tuple[float, int, dict[str, Any]]:
    calls = stats(vlm)["requests"]
    started = time.perf_counter()
    job_id = client.post("/v2/media/categories", json=body).raise_for_status().json()["job_id"]
    while True:
        job = client.get(f"/v2/media/categories/{job_id}").json()
        if job["status"] in ("COMPLETED", "FAILED", "CANCELLED"):
            break
        time.sleep(0.05)  # polling, as a client would
    seconds = time.perf_counter() - started
    if job["status"] != "COMPLETED":
        raise RuntimeError(f"job {job_id} ended {job['status']}: {job['error']}")
    return seconds, int(stats(vlm)["requests"] - calls), job


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--latency", type=float, default=0.2, help="seconds per request (L)")
    args = parser.parse_args()
    video = ensure_video(10)
    with (
        tempfile.TemporaryDirectory(prefix="scenecap-bench-cost-") as folder,
        fake_vlm(args.latency) as vlm,
        media_server(video.parent) as media,
        stack(vlm, Path(folder)) as (url, _env),
    ):
        engine = make_engine(DATABASE)
        with make_session_factory(engine).begin() as session:
            _key, plaintext = create_key(session, "bench-cost")
        engine.dispose()
        body = {"media_url": f"{media}/{video.name}", "max_frames": 60}
        headers = {"Authorization": f"Bearer {plaintext}"}
        with httpx.Client(base_url=url, headers=headers, timeout=60) as client:
            first = timed_job(client, body, vlm)
            second = timed_job(client, body, vlm)
    print(f"# Reuse: the same 10-minute video twice, L = {args.latency} s\n")
    print("| job | seconds | model calls | frames | reused frames | tokens |")
    print("| --- | --- | --- | --- | --- | --- |")
    for name, (seconds, calls, job) in (("first", first), ("second", second)):
        usage = job["usage"]
        print(
            f"| {name} | {seconds:.2f} | {calls} | {usage['frames']} | "
            f"{usage.get('reused_frames', 0)} | {usage['total_tokens']} |"
        )
    print(f"\nsecond / first: {second[0] / first[0]:.1%} of the time, {second[1]} model calls")


if __name__ == "__main__":
    main()
