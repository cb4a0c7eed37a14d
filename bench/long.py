"""Long-video benchmark: `make bench-long` (python -m bench.long).

On the cached 60-minute 720p30 video with a cut every 7 s (bench/videos.py):
1. Scene detection in one pass in one process, vs split into keyframe-aligned chunks of
   SCENE_CHUNK_SECONDS scored by two processes and stitched: time ratio, identical cuts.
2. A whole segment-mode job (10 s segments, 4 frames each) through real `scenecap worker`
   processes (1, then 2; VLM_MAX_CONCURRENCY 8 each) against the fake VLM in its own process
   with latency L: wall time vs the ideal max(decode work / workers, ceil(segments / (8 x
   workers)) x L), where decode work is one decoder thread extracting every segment's frames.
3. Peak RSS of the workers' processes (pool children and decode sandboxes) for 60 minutes and,
   with --four-hours, for the same video four times over (joined without re-encoding).
4. Our own overhead per segment at L = 0: request build, HTTP, parse and DB write (the fake
   server's own work subtracted), plus the JPEG encodes of its frames.
"""

from __future__ import annotations

import argparse
import asyncio
import math
import multiprocessing
import os
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import cv2
import psycopg
import redis
from celery import Celery

from bench.captioning import decode, fake_vlm, stats
from bench.videos import CACHE, ensure_video, ffmpeg
from db import jobs, work
from db.keys import create_key
from db.session import make_engine, make_session_factory
from migrations.apply import upgrade
from scenecap.core.settings import Settings
from scenecap.core.tasks import MEDIA_QUEUE, PROCESS_JOB
from scenecap.store import open_store
from worker.job.budget import frames_that_fit
from worker.job.progress import ProgressReporter
from worker.job.spec import JobSpec
from worker.pipeline.extract import ExtractOptions, extract_frames
from worker.pipeline.plan import PlannedFrame
from worker.pipeline.probe import Limits, probe_media
from worker.pipeline.scenes import (
    DetectorOptions,
    FrameScores,
    chunk_bounds,
    cuts_from_scores,
    detect_scenes,
    scenes_from_cuts,
    score_frames,
)
from worker.pipeline.segments import PlannedSegment, plan_segments
from worker.runtime import Runtime
from worker.segments.captions import SLOTS, caption_segments
from worker.vision.openai_compat import OpenAIBackend

ROOT = Path(__file__).resolve().parent.parent
ADMIN_URL = "postgresql://postgres@127.0.0.1:5432/postgres"
DATABASE = "postgresql+psycopg://postgres@127.0.0.1:5432/scenecap_bench_long"
BROKER = "redis://127.0.0.1:6379/12"
SEGMENT_SECONDS, FRAMES_PER_SEGMENT, CONCURRENCY = 10.0, 4, 8
METADATA = ("categories", "participants", "actions", "scene", "tags")


def timed(function: Any, *args: Any) -> tuple[Any, float]:
    start = time.perf_counter()
    result = function(*args)
    return result, time.perf_counter() - start


def _score(bounds: tuple[Path, float, float | None]) -> FrameScores:
    return score_frames(*bounds)


def scene_detection(video: Path, duration: float, chunk_seconds: float) -> None:
    settings = Settings()
    one_pass, one_seconds = timed(detect_scenes, video, duration)
    timeline = probe_media(video, Limits(10**6, 10**9)).timeline
    chunks = chunk_bounds(timeline, chunk_seconds)
    work_items = [
        (video, start, end if n + 1 < len(chunks) else None)
        for n, (start, end) in enumerate(chunks)
    ]

    def split() -> list[Any]:
        with multiprocessing.get_context("fork").Pool(2) as pool:
            parts = pool.map(_score, work_items, chunksize=1)
        options = DetectorOptions(
            settings.scene_detector, settings.scene_threshold, settings.min_scene_seconds
        )
        cuts = cuts_from_scores(parts, options)
        return scenes_from_cuts(cuts, duration)

    stitched, split_seconds = timed(split)
    print("## Scene detection, 60 minutes 720p30\n")
    print("| method | seconds | speed-up | scenes | same cuts as one pass |")
    print("| --- | --- | --- | --- | --- |")
    print(f"| one pass, one process | {one_seconds:.1f} | 1.00x | {len(one_pass)} | - |")
    print(
        f"| {len(chunks)} chunks of ~{chunk_seconds:.0f} s, two processes | {split_seconds:.1f} | "
        f"{one_seconds / split_seconds:.2f}x | {len(stitched)} | {stitched == one_pass} |\n"
    )


def decode_work(video: Path, duration: float) -> float:
    """Seconds one decoder thread takes to extract every segment's frames at the pixel budget."""
    settings = Settings()
    count, pixels = frames_that_fit(settings, METADATA, FRAMES_PER_SEGMENT)
    plan = plan_segments(
        duration, SEGMENT_SECONDS, count, max_segments=settings.max_segments, min_gap=0.0
    )
    planned = [
        PlannedFrame(s.index * 16 + n, t, s.start, s.end)
        for s in plan.segments
        for n, t in enumerate(s.frame_times)
    ]
    # One decoder thread: the work itself, which workers share; a worker's own extraction may
    # use more threads (EXTRACT_DECODERS).
    options = ExtractOptions(max_pixels=pixels, decoders=1)
    _frames, seconds = timed(lambda: sum(1 for _ in extract_frames(video, planned, options)))
    return seconds


class PeakMemory:
    """Samples the resident memory of a process tree; keeps each process's peak (VmHWM)."""

    def __init__(self, roots: list[int]) -> None:
        self.roots = roots
        self.peaks: dict[int, float] = {}
        self.names: dict[int, str] = {}
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        while not self.stop.wait(0.1):
            for pid in self._tree():
                try:
                    status = Path(f"/proc/{pid}/status").read_text()
                except OSError:
                    continue
                fields = dict(line.split(":", 1) for line in status.splitlines() if ":" in line)
                peak = int(fields.get("VmHWM", "0 kB").split()[0])
                self.peaks[pid] = max(self.peaks.get(pid, 0), peak)
                self.names.setdefault(pid, fields.get("PPid", "").strip())

    def _tree(self) -> list[int]:
        found, todo = [], list(self.roots)
        while todo:
            pid = todo.pop()
            found.append(pid)
            try:
                children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
            except OSError:
                continue
            todo += [int(child) for child in children]
        return found

    def result(self) -> tuple[float, float]:
        """(largest pool process, largest decode sandbox) in MB."""
        self.stop.set()
        self.thread.join()
        roots = set(self.roots)
        pool = [peak for pid, peak in self.peaks.items() if self.names[pid] in map(str, roots)]
        sandboxes = [
            peak
            for pid, peak in self.peaks.items()
            if pid not in roots and self.names[pid] not in map(str, roots)
        ]
        return max(pool, default=0) / 1024, max(sandboxes, default=0) / 1024


@contextmanager
def workers(count: int, env: dict[str, str], log: Path) -> Iterator[list[int]]:
    with log.open("ab") as out:
        processes = [
            subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "scenecap.cli.main",
                    "worker",
                    "--queues",
                    MEDIA_QUEUE,
                    "--concurrency",
                    "1",
                ],
                env=env,
                cwd=ROOT,
                stdout=out,
                stderr=out,
            )
            for _ in range(count)
        ]
        try:
            yield [p.pid for p in processes]
        finally:
            for process in processes:
                process.terminate()
            for process in processes:
                process.wait(timeout=60)


def run_job(video: Path, worker_count: int, vlm_url: str, store: Path) -> dict[str, Any]:
    """One segment-mode job through `worker_count` workers; its wall time and figures."""
    with psycopg.connect(ADMIN_URL, autocommit=True) as connection:
        connection.execute("DROP DATABASE IF EXISTS scenecap_bench_long WITH (FORCE)")
        connection.execute("CREATE DATABASE scenecap_bench_long")
    redis.Redis.from_url(BROKER).flushdb()
    upgrade(DATABASE)
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("SCENECAP_")},
        "SCENECAP_DATABASE_URL": DATABASE,
        "SCENECAP_BROKER_URL": BROKER,
        "SCENECAP_MEDIA_STORE": f"file://{store}",
        "SCENECAP_VISION_BACKEND": "openai",
        "SCENECAP_VLM_BASE_URL": vlm_url,
        "SCENECAP_VLM_MODEL": "fake-vlm",
        "SCENECAP_VLM_MAX_CONCURRENCY": str(CONCURRENCY),
        "SCENECAP_ALLOW_PRIVATE_URLS": "true",
        "SCENECAP_MAX_DURATION_SECONDS": str(5 * 3600),
        "SCENECAP_MAX_MEDIA_BYTES": str(20 * 1024**3),
        "SCENECAP_DECODE_TIMEOUT_SECONDS": "3600",
        "SCENECAP_LOG_LEVEL": "WARNING",
    }
    engine = make_engine(DATABASE)
    factory = make_session_factory(engine)
    with factory.begin() as session:
        key, _secret = create_key(session, "bench")
        job_id: uuid.UUID = jobs.create_job(
            session,
            api_key_id=key.id,
            media_url=f"file://{video}",
            media_type="video",
            requested_metadata=list(METADATA),
            segment_seconds=SEGMENT_SECONDS,
            frames_per_segment=FRAMES_PER_SEGMENT,
        ).id
    # The service reads only URLs and uploads: put the file where a fetched copy would be.
    (store / "jobs" / str(job_id)).mkdir(parents=True)
    os.link(video, store / "jobs" / str(job_id) / "media")
    with workers(worker_count, env, CACHE / "long-workers.log") as pids:
        memory = PeakMemory(pids)
        sender = Celery(broker=BROKER)
        start = time.perf_counter()
        sender.send_task(PROCESS_JOB, args=[str(job_id)], queue=MEDIA_QUEUE)
        while True:
            with factory() as session:
                job = jobs.get_job(session, job_id)
                assert job is not None
                if job.status in ("COMPLETED", "FAILED", "CANCELLED"):
                    break
            time.sleep(0.2)  # progress poll; the job takes minutes
        seconds = time.perf_counter() - start
        sender.close()
        pool_mb, sandbox_mb = memory.result()
    with factory() as session:
        segments = len(work.segments_of(session, job_id))
    engine.dispose()
    assert job.status == "COMPLETED", job.error_message
    return {"seconds": seconds, "segments": segments, "pool_mb": pool_mb, "sandbox_mb": sandbox_mb}


def four_hours(video: Path) -> Path:
    path = CACHE / "cuts-720p30-240min.mp4"
    if not path.exists():
        listing = CACHE / "four-hours.txt"
        listing.write_text(f"file '{video}'\n" * 4)
        subprocess.run(
            [
                ffmpeg(),
                "-hide_banner",
                "-loglevel",
                "error",
                "-y",
                "-f",
                "concat",
                "-safe",
                "0",
                "-i",
                str(listing),
                "-c",
                "copy",
                str(path),
            ],
            check=True,
        )
    return path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--latency", type=float, default=0.3, help="seconds per request (L)")
    parser.add_argument("--four-hours", action="store_true", help="also the 4-hour video's RSS")
    args = parser.parse_args()
    video = ensure_video(60)
    duration = probe_media(video, Limits(10**6, 10**9)).duration
    settings = Settings()
    print("# Long videos (ratios measured in this run)\n")
    scene_detection(video, duration, settings.scene_chunk_seconds)

    decode = decode_work(video, duration)
    print(
        f"## A 60-minute job, {SEGMENT_SECONDS:g} s segments x {FRAMES_PER_SEGMENT} frames, "
        f"L = {args.latency} s\n"
    )
    print(f"decode work (one decoder thread extracting every segment's frames): {decode:.1f} s\n")
    print(
        "| workers | seconds | ideal | measured / ideal | peak RSS, worker process | "
        "peak RSS, decode sandbox |"
    )
    print("| --- | --- | --- | --- | --- | --- |")
    with tempfile.TemporaryDirectory(prefix="scenecap-bench-long-") as folder:
        runs = [(1, video), (2, video)]
        if args.four_hours:
            runs.append((2, four_hours(video)))
        for worker_count, source in runs:
            store = Path(folder) / f"store-{worker_count}-{source.stem}"
            with fake_vlm(args.latency) as url:
                result = run_job(source, worker_count, url, store)
            scale = 4 if source != video else 1
            requests = math.ceil(result["segments"] / (CONCURRENCY * worker_count))
            ideal = max(scale * decode / worker_count, requests * args.latency)
            label = f"{worker_count}" + (" (4 hours)" if scale == 4 else "")
            print(
                f"| {label} | {result['seconds']:.1f} | {ideal:.1f} | "
                f"{result['seconds'] / ideal:.2f} | {result['pool_mb']:.0f} MB | "
                f"{result['sandbox_mb']:.0f} MB |"
            )
    overhead(video)


def caption_only(url: str, frames: list[Any], count: int, folder: Path) -> float:
    """Seconds to caption and store the segments of these frames (already decoded) through
    the worker's own segment path, one request at a time."""
    settings = Settings(
        vision_backend="openai",
        vlm_base_url=url,
        vlm_model="fake-vlm",
        vlm_max_concurrency=1,
        database_url=f"sqlite:///{folder / 'overhead.db'}",
        media_store=f"file://{folder / 'store'}",
    )
    upgrade(settings.database_url)
    factory = make_session_factory(make_engine(settings.database_url))
    n = len(frames) // count
    planned = [
        PlannedSegment(s, s * SEGMENT_SECONDS, (s + 1) * SEGMENT_SECONDS, ()) for s in range(n)
    ]
    with factory.begin() as session:
        key, _secret = create_key(session, "bench")
        job_id = jobs.create_job(
            session,
            api_key_id=key.id,
            media_url="bench",
            media_type="video",
            requested_metadata=list(METADATA),
            segment_seconds=SEGMENT_SECONDS,
        ).id
    with factory.begin() as session:
        job = jobs.claim_job(session, job_id, "bench", 600)
        assert job is not None
        spec = JobSpec.of(job)
        work.add_segments(session, job_id, planned)
        work.set_totals(session, job_id, segments_total=n)
        jobs.hand_over(session, job_id)
    with factory() as session:
        todo = work.segments_of(session, job_id)
    loop = asyncio.new_event_loop()
    rt = Runtime(
        settings=settings,
        session_factory=factory,
        store=open_store(settings),
        backend=OpenAIBackend(settings),
        worker_id="bench",
        loop=loop,
    )
    progress = ProgressReporter(
        factory, job_id, lease_seconds=600, min_interval=settings.progress_min_interval_seconds
    )

    def extract(send: Any) -> None:  # the frames, as the decode sandbox would send them
        for frame in frames:
            send([frame])

    counts = Counter(frame.planned.index // SLOTS for frame in frames)
    start = time.perf_counter()
    rt.run(caption_segments(rt, spec, todo, counts, extract, progress))
    seconds = time.perf_counter() - start
    loop.run_until_complete(rt.backend.aclose())
    loop.close()
    return seconds


def overhead(video: Path) -> None:
    """Per segment at L = 0: ours = caption + store time minus the fake server's own work."""
    settings = Settings()
    count, pixels = frames_that_fit(settings, METADATA, FRAMES_PER_SEGMENT)
    n = 100
    planned = [
        PlannedFrame(
            s * SLOTS + i,
            s * SEGMENT_SECONDS + 1 + 2 * i,
            s * SEGMENT_SECONDS,
            (s + 1) * SEGMENT_SECONDS,
        )
        for s in range(n)
        for i in range(count)
    ]
    frames = list(extract_frames(video, planned, ExtractOptions(max_pixels=pixels)))
    with tempfile.TemporaryDirectory(prefix="scenecap-bench-") as folder, fake_vlm(0.0) as url:
        seconds = caption_only(url, frames, count, Path(folder))
        fake_work = stats(url)["work_seconds"]
    images = [decode(f.jpeg) for f in frames]
    start = time.perf_counter()
    for image in images:
        cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, 85])
    encode = (time.perf_counter() - start) / n
    ours = (seconds - fake_work) / n
    print(
        f"\n## Our overhead per segment at L = 0 ({count} frames of "
        f"{frames[0].width}x{frames[0].height})\n"
    )
    print(
        f"request build, HTTP, parse, DB write: {ours * 1000:.1f} ms; JPEG encodes: "
        f"{encode * 1000:.1f} ms; total {(ours + encode) * 1000:.1f} ms "
        f"(the fake server's own work, {fake_work / n * 1000:.1f} ms, not counted)"
    )


if __name__ == "__main__":
    main()
