"""Captioning-stage benchmark: `make bench-captioning` (python -m bench.captioning).

60 frames captioned against the fake VLM (a real HTTP server in its own process, as a real
model server would be) with a fixed latency L per request, at several concurrency limits C:
measured time vs the ideal ceil(N/C)*L and vs the sequential N*L. Then L=0: our own
per-frame overhead (request build, HTTP, parse, DB write), and a frame's JPEG encode.
The database is a migrated SQLite file unless --database-url names another (e.g. the
PostgreSQL the tests use).
"""

from __future__ import annotations

import argparse
import asyncio
import math
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import cv2
import httpx
import numpy as np
from sqlalchemy.orm import Session, sessionmaker

from db import jobs
from db.keys import create_key
from db.session import make_engine, make_session_factory
from migrations.apply import upgrade
from scenecap.cli.sample import write_sample_video
from scenecap.core.settings import Settings
from scenecap.store import open_store
from worker.frames.captions import caption_frames
from worker.job.progress import ProgressReporter
from worker.pipeline.extract import ExtractedFrame, ExtractOptions, extract_frames
from worker.pipeline.plan import plan_even
from worker.runtime import Runtime
from worker.vision.base import CaptionRequest
from worker.vision.openai_compat import OpenAIBackend

N = 60
ROOT = Path(__file__).resolve().parent.parent


def time_caption_stage(
    settings: Settings, frames: list[ExtractedFrame], session_factory: sessionmaker[Session]
) -> float:
    """Seconds to caption and store all frames of a fresh job at these settings."""
    with session_factory.begin() as session:
        key, _ = create_key(session, "bench")
        job = jobs.create_job(
            session,
            api_key_id=key.id,
            media_url="bench",
            media_type="video",
            requested_metadata=["categories", "tags"],
        )
        job_id, key_id = job.id, key.id
    with session_factory.begin() as session:
        jobs.claim_job(session, job_id, "bench", 600)
    loop = asyncio.new_event_loop()
    backend = OpenAIBackend(settings)
    rt = Runtime(
        settings=settings,
        session_factory=session_factory,
        store=open_store(settings),
        backend=backend,
        worker_id="bench",
        loop=loop,
    )
    progress = ProgressReporter(
        session_factory,
        job_id,
        lease_seconds=600,
        min_interval=settings.progress_min_interval_seconds,
    )
    start = time.perf_counter()
    rt.run(
        caption_frames(
            rt,
            job_id,
            key_id,
            CaptionRequest(("categories", "tags")),
            frames,
            progress,
            done=0,
            total=len(frames),
        )
    )
    elapsed = time.perf_counter() - start
    loop.run_until_complete(backend.aclose())
    loop.close()
    return elapsed


@contextmanager
def fake_vlm(delay: float) -> Iterator[str]:
    """Run the fake VLM in its own process; yield its base URL."""
    with fake_server("tests.support.fake_vlm", delay) as url:
        yield url


@contextmanager
def fake_server(module: str, delay: float) -> Iterator[str]:
    """Run one of the tests' fake model servers in its own process; yield its base URL."""
    process = subprocess.Popen(
        [sys.executable, "-m", module, "--delay", str(delay)],
        stdout=subprocess.PIPE,
        text=True,
        cwd=ROOT,
    )
    try:
        assert process.stdout is not None
        yield process.stdout.readline().strip()
    finally:
        process.terminate()
        process.wait()


def decode(jpeg: bytes) -> np.ndarray:
    """A frame's JPEG as pixels (it was encoded here: it decodes)."""
    image = cv2.imdecode(np.frombuffer(jpeg, np.uint8), cv2.IMREAD_COLOR)
    assert image is not None
    return image


def stats(base_url: str) -> dict[str, float]:
    figures: dict[str, float] = httpx.get(base_url.removesuffix("/v1") + "/stats").json()
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--latency", type=float, default=0.2, help="seconds per request (L)")
    parser.add_argument("--concurrency", type=int, nargs="*", default=[1, 4, 8, 16])
    parser.add_argument("--database-url", default=None)
    args = parser.parse_args()

    folder = Path(tempfile.mkdtemp(prefix="scenecap-bench-"))
    database_url = args.database_url or f"sqlite:///{folder / 'bench.db'}"
    upgrade(database_url)
    session_factory = make_session_factory(make_engine(database_url))
    video = write_sample_video(folder / "sample.mp4", width=1280, height=720)
    frames = list(extract_frames(video, plan_even(12.0, N, 0.0), ExtractOptions(max_pixels=602112)))
    base = Settings(vlm_model="fake-vlm", vision_backend="openai")

    print("# captioning stage: 60 frames against the fake VLM (ratios measured in this run)")
    print(f"database: {database_url.split(':')[0]}; latency L = {args.latency:.3f} s per request\n")
    print(
        "| concurrency C | seconds | ideal ceil(N/C)*L | measured / ideal | sequential N*L | "
        "speed-up vs sequential | max requests in flight |"
    )
    print("| --- | --- | --- | --- | --- | --- | --- |")
    for concurrency in args.concurrency:
        with fake_vlm(args.latency) as url:
            settings = base.model_copy(
                update={"vlm_max_concurrency": concurrency, "vlm_base_url": url}
            )
            elapsed = time_caption_stage(settings, frames, session_factory)
            in_flight = stats(url)["max_in_flight"]
        ideal = math.ceil(N / concurrency) * args.latency
        sequential = N * args.latency
        print(
            f"| {concurrency} | {elapsed:.2f} | {ideal:.2f} | {elapsed / ideal:.3f} | "
            f"{sequential:.2f} | {sequential / elapsed:.1f}x | {in_flight:.0f} |"
        )

    with fake_vlm(0.0) as url:
        settings = base.model_copy(update={"vlm_max_concurrency": 1, "vlm_base_url": url})
        overhead = time_caption_stage(settings, frames, session_factory)
        fake_work = stats(url)["work_seconds"]
    images = [decode(f.jpeg) for f in frames]
    start = time.perf_counter()
    for image in images:
        cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, 85])
    encode = (time.perf_counter() - start) / N
    ours = (overhead - fake_work) / N * 1000
    print(
        f"\nL = 0, C = 1: {overhead / N * 1000:.1f} ms a frame in all, of which the fake server's "
        f"own JSON and image decoding {fake_work / N * 1000:.1f} ms; ours (request build, "
        f"HTTP, parse, DB write, progress checkpoint): {ours:.1f} ms. "
        f"JPEG encode of a {frames[0].width}x{frames[0].height} frame: {encode * 1000:.1f} ms"
    )


if __name__ == "__main__":
    main()
