"""Tenancy and abuse bounds: `make bench-abuse` (python -m bench.abuse [--jobs N]).

Each figure is a ratio measured in the same run (absolute times drift on a shared machine):

- streams: 1,000 event streams opened on one share token of a queued job (never processed,
  so each stays open) while an authenticated client GETs the job; its p50 beside the same
  GET with no stream open. Twice: with the shipped caps (10 per job: the rest are refused),
  and with the caps raised to 1,000 so every stream is held (one poller per job still).
- bodies: 10 concurrent 30 MB batch bodies (data: videos); the API's RSS before, at its peak
  and 5 s after (targets: growth <= 300 MB, back within 50 MB).
- search: a key with 30 passages among N x 60 of another key's; that key's search through
  the API, p50/p99 (target p99 <= 10 ms), beside the crowded key's.
- ledger: what the spend ledger adds to a submit (the per-key lock and the sums read under
  it) and to a captioned frame (its upsert, in the frame's own transaction), as a share of
  a submit through the API and of a frame's save without it (target <= 10 %).
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import json
import os
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import psycopg
import redis
from sqlalchemy import func, select

from bench.api import ADMIN_URL, BROKER, api, sample_body
from bench.captioning import N, fake_vlm, stats, time_caption_stage
from bench.load import percentile
from bench.search import library, load, timed
from db import jobs as job_repo
from db import spend
from db.keys import create_key
from db.models import Job
from db.session import make_engine, make_session_factory
from db.spend import Spent
from migrations.apply import upgrade
from scenecap.cli.sample import write_sample_video
from scenecap.core.settings import Settings
from worker.pipeline.extract import ExtractOptions, extract_frames
from worker.pipeline.plan import plan_even

DATABASE = "postgresql+psycopg://postgres@127.0.0.1:5432/scenecap_bench_abuse"
PLAIN = DATABASE.replace("+psycopg", "")
STREAMS, BODIES, BODY_MB = 1000, 10, 30
# No worker runs: nothing queued is ever processed, so no cap on active jobs is reached.
BASE = {"SCENECAP_MAX_ACTIVE_JOBS_PER_KEY": "0"}


def fresh_database() -> None:
    with psycopg.connect(ADMIN_URL, autocommit=True) as connection:
        connection.execute("DROP DATABASE IF EXISTS scenecap_bench_abuse WITH (FORCE)")
        connection.execute("CREATE DATABASE scenecap_bench_abuse")
    redis.Redis.from_url(BROKER).flushdb()
    upgrade(DATABASE)


def new_key(name: str) -> tuple[uuid.UUID, str]:
    engine = make_engine(DATABASE)
    with make_session_factory(engine).begin() as session:
        key, plaintext = create_key(session, name)
        key_id = key.id
    engine.dispose()
    return key_id, plaintext


def get_p50(client: httpx.Client, path: str, rounds: int = 200) -> tuple[float, float]:
    times = []
    for _ in range(rounds):
        started = time.perf_counter()
        client.get(path).raise_for_status()
        times.append(1000 * (time.perf_counter() - started))
    return percentile(times, 0.5), percentile(times, 0.99)


async def _open_streams(url: str, path: str, count: int, opened: list[int]) -> None:
    """Open `count` event streams, one after another; keep the held ones open until
    cancelled. `opened`: [streams held, attempts answered]."""
    host, port = url.removeprefix("http://").split(":")
    writers = []
    try:
        for _ in range(count):
            reader, writer = await asyncio.open_connection(host, int(port))
            writer.write(f"GET {path} HTTP/1.1\r\nHost: {host}\r\n\r\n".encode())
            await writer.drain()
            status = await reader.readline()
            if b" 200 " in status:
                opened[0] += 1
                writers.append(writer)
            else:
                writer.close()
            opened[1] += 1
        await asyncio.Event().wait()  # held until the measurement is over
    except asyncio.CancelledError:
        pass  # the measurement is over
    finally:
        for writer in writers:
            writer.close()


@contextlib.contextmanager
def streams_open(url: str, path: str, count: int) -> Iterator[int]:
    """`count` streams opened from another thread; yields how many the API kept open."""
    loop = asyncio.new_event_loop()
    opened = [0, 0]
    task = loop.create_task(_open_streams(url, path, count, opened))
    thread = threading.Thread(target=loop.run_until_complete, args=(task,), daemon=True)
    thread.start()
    deadline = time.monotonic() + 300
    while opened[1] < count:  # every attempt answered (held or refused)
        if time.monotonic() > deadline:
            raise RuntimeError(f"only {opened[1]} of {count} streams were answered")
        time.sleep(0.1)
    try:
        yield opened[0]
    finally:
        loop.call_soon_threadsafe(task.cancel)
        thread.join(timeout=30)


def streams() -> None:
    fresh_database()
    key_id, plaintext = new_key("streams")
    engine = make_engine(DATABASE)
    with make_session_factory(engine).begin() as session:
        job = job_repo.create_job(
            session,
            api_key_id=key_id,
            media_url="https://example.com/clip.mp4",
            media_type="video",
            requested_metadata=["tags"],
        )
        job_id = str(job.id)
    engine.dispose()
    print(f"\nevent streams: {STREAMS:,} opened on one token; authenticated GET job, 200 requests")
    print("| caps | streams held | GET p50 idle | GET p50 with streams | ratio | p99 idle / with |")
    print("| --- | --- | --- | --- | --- | --- |")
    raised = {
        "SCENECAP_MAX_STREAMS_PER_JOB": str(STREAMS),
        "SCENECAP_MAX_STREAMS_PER_KEY": str(STREAMS),
        "SCENECAP_SHARE_RATE_LIMIT_PER_MINUTE": str(100 * STREAMS),
    }
    for name, extra in (("shipped (10 per job)", {}), ("raised to 1,000", raised)):
        with (
            api(1, DATABASE, BASE | extra) as url,
            httpx.Client(base_url=url, headers={"Authorization": f"Bearer {plaintext}"}) as client,
        ):
            path = f"/v2/media/categories/{job_id}"
            events = client.post(f"{path}/share").raise_for_status().json()["events_url"]
            get_p50(client, path, 50)  # warm the pools
            idle, idle99 = get_p50(client, path)
            with streams_open(url, events, STREAMS) as held:
                busy, busy99 = get_p50(client, path)
        print(
            f"| {name} | {held:,} | {idle:.1f} ms | {busy:.1f} ms | {busy / idle:.2f}x "
            f"| {idle99:.1f} / {busy99:.1f} ms |"
        )


def rss_mb(pid: int) -> float:
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


def api_pid(url: str) -> int:
    """The `scenecap api` process serving `url` (one process: uvicorn runs in it)."""
    port = url.rsplit(":", 1)[1]
    for pid in (p for p in os.listdir("/proc") if p.isdigit()):
        with contextlib.suppress(OSError):
            argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
            if b"api" in argv and port.encode() in argv:
                return int(pid)
    raise RuntimeError("the API's process was not found")


def bodies() -> None:
    fresh_database()
    _key_id, plaintext = new_key("bodies")
    media = base64.b64encode(b"\x00" * (BODY_MB * 1024 * 1024 * 3 // 4 - 64)).decode()
    body = json.dumps({"requests": [{"media_url": f"data:video/mp4;base64,{media}"}]})
    # Warm: what the first accepted submissions import and cache is not a body's.
    small = json.dumps({"requests": [json.loads(sample_body())]})
    with api(1, DATABASE, BASE) as url:
        pid = api_pid(url)
        for _ in range(3):
            httpx.post(
                f"{url}/v2/media/categories/batch",
                content=small,
                headers={"Authorization": f"Bearer {plaintext}"},
            )
        before = rss_mb(pid)
        peak = [before]
        sampling = threading.Event()

        def sample() -> None:
            while not sampling.is_set():
                peak[0] = max(peak[0], rss_mb(pid))
                time.sleep(0.02)

        sampler = threading.Thread(target=sample)
        sampler.start()
        statuses: list[int] = []

        def post() -> None:
            with httpx.Client(base_url=url, timeout=120) as client:
                response = client.post(
                    "/v2/media/categories/batch",
                    content=body,
                    headers={
                        "Authorization": f"Bearer {plaintext}",
                        "Content-Type": "application/json",
                    },
                )
                statuses.append(response.status_code)

        posters = [threading.Thread(target=post) for _ in range(BODIES)]
        for poster in posters:
            poster.start()
        for poster in posters:
            poster.join()
        time.sleep(5)  # the measurement's settling time, not a wait for an outcome
        sampling.set()
        sampler.join()
        after = rss_mb(pid)
    answers = ", ".join(f"{statuses.count(s)}x {s}" for s in sorted(set(statuses)))
    print(f"\n{BODIES} concurrent {BODY_MB} MB batch bodies ({answers})")
    print("| RSS before | peak | growth | 5 s after | left over |")
    print("| --- | --- | --- | --- | --- |")
    print(
        f"| {before:.0f} MB | {peak[0]:.0f} MB | {peak[0] - before:.0f} MB | {after:.0f} MB "
        f"| {after - before:.0f} MB |"
    )


def crowded_search(jobs: int, rounds: int) -> None:
    fresh_database()
    crowded_id, crowded = new_key("crowded")
    small_id, small = new_key("small")
    generated = list(library(jobs))
    own_job, own_rows = next(library(1, seed=3))
    started = time.perf_counter()
    load(
        DATABASE,
        [(crowded_id, job_id, rows) for job_id, rows in generated]
        + [(small_id, own_job, own_rows[:30])],
    )
    print(
        f"\nsearch: a key with 30 passages among {jobs * 60:,} of another key's "
        f"(loaded in {time.perf_counter() - started:.0f} s); 8 queries x {rounds}, through the API"
    )
    queries = [
        "person",
        "kitchen",
        "red car",
        "dog",
        "-zzzz kitchen",
        "bright studio",
        "cat",
        "robot",
    ]
    print("| key | p50 | p99 |")
    print("| --- | --- | --- |")
    with api(1, DATABASE, BASE) as url:
        for name, plaintext in (("30 passages", small), (f"{jobs * 60:,} passages", crowded)):
            times: list[float] = []
            with httpx.Client(
                base_url=url, headers={"Authorization": f"Bearer {plaintext}"}
            ) as client:
                for query in queries:

                    def get(q: str = query) -> httpx.Response:
                        return client.get("/v2/media/search", params={"q": q}).raise_for_status()

                    times += timed(get, rounds)
            print(
                f"| {name} | {percentile(times, 0.5):.1f} ms | {percentile(times, 0.99):.1f} ms |"
            )


def ledger(rounds: int) -> None:
    """The ledger's statements, timed inside an open transaction as they run in a submit and
    in a frame's store, against a submit through the API and a captioned frame's own work
    (the captioning stage at zero model latency, one at a time, less the fake's work)."""
    fresh_database()
    key_id, plaintext = new_key("ledger")
    engine = make_engine(DATABASE)
    factory = make_session_factory(engine)
    active_jobs = (
        select(func.count())
        .select_from(Job)
        .where(Job.api_key_id == key_id, Job.status.in_(spend.ACTIVE))
    )
    spent = Spent(prompt_tokens=900, completion_tokens=60, frames=1)
    with factory.begin() as session:
        session.execute(select(1))  # the transaction is open, as in a submit's
        # Before the ledger a submit counted the key's active jobs; now it locks the key and
        # reads its standing.
        before = percentile(timed(lambda: session.scalar(active_jobs), rounds), 0.5)
        now = percentile(timed(lambda: spend.standing(session, key_id), rounds), 0.5)
        upsert = percentile(timed(lambda: spend.record(session, key_id, spent), rounds), 0.5)
    body = sample_body()
    with (
        api(1, DATABASE, BASE) as url,
        httpx.Client(base_url=url, headers={"Authorization": f"Bearer {plaintext}"}) as client,
    ):
        submit = percentile(
            timed(
                lambda: client.post(
                    "/v2/media/categories",
                    content=body,
                    headers={"Content-Type": "application/json"},
                ).raise_for_status(),
                rounds,
            ),
            0.5,
        )
    with tempfile.TemporaryDirectory() as folder:
        video = write_sample_video(Path(folder) / "sample.mp4", width=1280, height=720)
        frames = list(
            extract_frames(video, plan_even(12.0, N, 0.0), ExtractOptions(max_pixels=602112))
        )
        with fake_vlm(0.0) as model:
            settings = Settings(
                vlm_model="fake-vlm",
                vision_backend="openai",
                vlm_base_url=model,
                vlm_max_concurrency=1,
                media_store=f"file://{folder}/store",
            )
            elapsed = time_caption_stage(settings, frames, factory)
            per_frame = 1000 * (elapsed - stats(model)["work_seconds"]) / N
    engine.dispose()
    added = now - before
    print(f"\nledger: p50 of {rounds} each (its statements inside an open transaction)")
    print("| operation | its time | the ledger's part | share |")
    print("| --- | --- | --- | --- |")
    share = 100 * added / submit
    print(f"| submit, through the API | {submit:.2f} ms | {added:.2f} ms | {share:.1f} % |")
    share = 100 * upsert / per_frame
    print(
        f"| captioned frame, our own work (L = 0) | {per_frame:.2f} ms | {upsert:.2f} ms "
        f"| {share:.1f} % |"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=10_000, help="the crowded key's jobs (x 60)")
    parser.add_argument("--rounds", type=int, default=100)
    args = parser.parse_args()
    streams()
    bodies()
    crowded_search(args.jobs, args.rounds // 5)
    ledger(args.rounds)
    with contextlib.suppress(psycopg.Error), psycopg.connect(ADMIN_URL, autocommit=True) as c:
        c.execute("DROP DATABASE IF EXISTS scenecap_bench_abuse WITH (FORCE)")


if __name__ == "__main__":
    main()
