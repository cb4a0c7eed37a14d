"""Search and questions: `make bench-search` (python -m bench.search [--jobs N]).

A synthetic library in PostgreSQL: 10,000 completed jobs of one key (the worst case: every
search covers the whole library) x 60 passages each (40 frame captions, 10 transcript lines,
5 chapters, 5 labels), 600,000 in all, written from a vocabulary with Zipf-like word
frequencies, as real captions are (a few words everywhere, most rare). Then, in one run:

- indexing: `db.search.index_job` + commit for 60-passage jobs added to the full library,
  per job (target <= 10 ms);
- search: one- to three-word queries (common, middling and rare words) through `scenecap
  api` as shipped, sequential, p50/p99 (targets 20 / 100 ms), beside the same statement run
  as plain SQL over one psycopg connection (the floor);
- ask: POST .../ask against the fake model with no latency, beside the same model request
  sent straight to the fake; the difference is our overhead (target <= 30 ms).
"""

from __future__ import annotations

import argparse
import contextlib
import random
import time
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import psycopg
import redis
from sqlalchemy import insert

from api.auth import Caller
from api.services.ask import PROMPT, SYSTEM, prompt_for, retrieve
from bench.api import ADMIN_URL, BROKER, api
from bench.captioning import fake_vlm
from bench.load import percentile
from db import search
from db.keys import create_key
from db.models import Job
from db.search import _POSTGRES
from db.session import make_engine, make_session_factory
from migrations.apply import upgrade
from scenecap.core.enums import JobKind, JobStatus, utcnow
from scenecap.core.tokens import TEMPLATE_TOKENS, text_tokens

DATABASE = "postgresql+psycopg://postgres@127.0.0.1:5432/scenecap_bench_search"
PLAIN = DATABASE.replace("+psycopg", "")
CONTEXT_TOKENS = 32768


def words(text: str) -> list[str]:
    return text.split()


SUBJECTS = words(
    "person man woman child dog cat car truck bicycle bird player crowd chef worker "
    "teacher student horse boat train plane robot drone camera phone ball kettle "
    "guitar piano laptop screen door window chair table tree flower river mountain"
)
VERBS = words(
    "walks runs sits stands talks holds opens closes drives rides jumps cooks plays "
    "reads writes looks points waves carries pours cuts throws catches climbs swims"
)
ADJECTIVES = words(
    "red blue green yellow black white small large old young bright dark wooden metal "
    "busy quiet crowded empty wet dusty shiny tall narrow wide"
)
PLACES = words(
    "kitchen street office park beach stage field garden classroom studio warehouse "
    "station market stadium forest bridge harbour corridor parking lobby rooftop"
)
SAID = words(
    "we need to move the boxes before noon okay let me show you how this works the "
    "next step is important please watch carefully thank you everyone for coming "
    "today this is where the magic happens can you hear me now look at the screen"
)
QUERIES = [
    "person",
    "kitchen",
    "dog",
    "red car",
    "woman holds",
    "guitar",
    "harbour",
    "drone",
    "bright studio",
    "chef cooks kitchen",
    "child jumps park",
    "boxes noon",
    "piano",
    "crowded station",
    "robot",
    "old wooden bridge",
    "cat",
    "swims river",
    "screen",
    "magic happens",
]


def zipf(words: list[str], rng: random.Random) -> Callable[[], str]:
    weights = [1 / (rank + 1) for rank in range(len(words))]
    return lambda: rng.choices(words, weights)[0]


def library(jobs: int, seed: int = 7) -> Iterator[tuple[uuid.UUID, list[tuple[Any, ...]]]]:
    """Each job's id and its 60 passages as (kind, start, end, text)."""
    rng = random.Random(seed)
    subject, verb = zipf(SUBJECTS, rng), zipf(VERBS, rng)
    adjective, place, said = zipf(ADJECTIVES, rng), zipf(PLACES, rng), zipf(SAID, rng)

    def caption() -> str:
        first = f"A {adjective()} {subject()} {verb()} in a {adjective()} {place()}"
        second = f"while a {subject()} {verb()} near the {subject()}"
        return f"{first}, {second}; the {place()} is {adjective()}."

    for _ in range(jobs):
        rows: list[tuple[Any, ...]] = []
        for i in range(40):
            rows.append(("frame", i * 3.0, i * 3.0, caption()))
        for i in range(10):
            words = " ".join(said() for _ in range(rng.randint(8, 20)))
            rows.append(("transcript", i * 12.0, i * 12.0 + 10.0, words))
        for i in range(5):
            rows.append(("chapter", i * 24.0, i * 24.0 + 24.0, f"{place()}: {caption()}"))
        for i in range(5):
            rows.append(("label", i * 3.0, 117.0, subject()))
        yield uuid.uuid4(), rows


def prepare(jobs: int) -> tuple[uuid.UUID, str]:
    """The library in a fresh database; returns the key's id and plaintext."""
    with psycopg.connect(ADMIN_URL, autocommit=True) as connection:
        connection.execute("DROP DATABASE IF EXISTS scenecap_bench_search WITH (FORCE)")
        connection.execute("CREATE DATABASE scenecap_bench_search")
    redis.Redis.from_url(BROKER).flushdb()
    upgrade(DATABASE)
    engine = make_engine(DATABASE)
    with make_session_factory(engine).begin() as session:
        key, plaintext = create_key(session, "library")
    started = time.perf_counter()
    generated = list(library(jobs))
    load(DATABASE, [(key.id, job_id, rows) for job_id, rows in generated])
    print(
        f"library: {jobs:,} jobs, {jobs * 60:,} passages, "
        f"loaded and indexed in {time.perf_counter() - started:.0f} s"
    )
    return key.id, plaintext


def completed_job(job_id: uuid.UUID, key_id: uuid.UUID) -> dict[str, Any]:
    """A completed job's row, as a bulk insert takes it."""
    return {
        "id": job_id,
        "api_key_id": key_id,
        "kind": JobKind.CATEGORIES,
        "status": JobStatus.COMPLETED,
        "media_url": f"https://example.com/{job_id}.mp4",
        "media_type": "video",
        "requested_metadata": ["tags"],
        "percent_complete": 100,
        "results": {"description": "A synthetic video."},
        "completed_at": utcnow(),
    }


def load(database: str, library: list[tuple[uuid.UUID, uuid.UUID, list[Any]]]) -> None:
    """Completed jobs and their passages, (key, job, passages) each, in bulk: the jobs in one
    insert, the passages by COPY with the key's GIN index dropped and built again after, as
    one would."""
    engine = make_engine(database)
    with make_session_factory(engine).begin() as session:
        session.execute(insert(Job), [completed_job(job, key) for key, job, _ in library])
    engine.dispose()
    with psycopg.connect(database.replace("+psycopg", "")) as connection:
        connection.execute("DROP INDEX ix_passages_key_tsv")
        with connection.cursor().copy(
            'COPY passages (job_id, api_key_id, kind, start, "end", text) FROM STDIN'
        ) as copy:
            for key_id, job_id, rows in library:
                for kind, start, end, text in rows:
                    copy.write_row((job_id, key_id, kind, start, end, text))
        connection.execute(
            "CREATE INDEX ix_passages_key_tsv ON passages USING gin (api_key_id, tsv)"
        )
        connection.execute("ANALYZE passages")
        connection.commit()


def indexing_ms(key_id: uuid.UUID, count: int) -> float:
    """Per job: index_job and its commit, into the full library."""
    engine = make_engine(DATABASE)
    sessions = make_session_factory(engine)
    spent = 0.0
    for job_id, rows in library(count, seed=11):
        with sessions.begin() as session:
            session.execute(
                insert(Job),
                [
                    {
                        "id": job_id,
                        "api_key_id": key_id,
                        "status": JobStatus.COMPLETED,
                        "media_url": "https://example.com/new.mp4",
                        "media_type": "video",
                        "requested_metadata": ["tags"],
                    }
                ],
            )
        results = {
            "frames": [{"timestamp": s, "caption": t} for k, s, _e, t in rows if k == "frame"],
            "transcript": {
                "segments": [
                    {"start": s, "end": e, "text": t} for k, s, e, t in rows if k == "transcript"
                ]
            },
        }
        started = time.perf_counter()
        with sessions.begin() as session:
            search.index_job(session, job_id, results)
        spent += time.perf_counter() - started
    engine.dispose()
    return 1000 * spent / count


def timed(call: Callable[[], Any], rounds: int) -> list[float]:
    call()  # warm: plans cached, pages in memory
    times = []
    for _ in range(rounds):
        started = time.perf_counter()
        call()
        times.append(1000 * (time.perf_counter() - started))
    return times


def search_latency(key_id: uuid.UUID, plaintext: str, rounds: int) -> None:
    sql: list[float] = []
    with psycopg.connect(PLAIN, autocommit=True) as connection:
        # The statement db.search runs, as psycopg parameters.
        statement = _POSTGRES.replace(":q", "%(q)s").replace(":key", "%(key)s")
        for name in ("job", "after_score", "after_id", "limit"):
            statement = statement.replace(f":{name}", f"%({name})s")
        for query in QUERIES:
            params = {"q": query, "key": key_id, "job": None, "after_score": None}
            params |= {"after_id": None, "limit": 21}

            def run(p: dict[str, Any] = params) -> Any:
                return connection.execute(statement, p).fetchall()

            sql += timed(run, rounds)
    through_api: list[float] = []
    matches = []
    slowest: list[tuple[float, str]] = []
    with api(1, DATABASE) as url, httpx.Client(base_url=url) as client:
        headers = {"Authorization": f"Bearer {plaintext}"}
        for query in QUERIES:

            def get(q: str = query) -> httpx.Response:
                response = client.get("/v2/media/search", params={"q": q}, headers=headers)
                response.raise_for_status()
                return response

            times = timed(get, rounds)
            through_api += times
            matches.append(len(get().json()["data"]))
            slowest.append((percentile(times, 0.5), query))
    print(
        f"\nsearch, {len(QUERIES)} queries x {rounds} (first page of 20; {min(matches)} to "
        f"{max(matches)} hits shown per query)"
    )
    print(f"{'':12} {'p50 ms':>8} {'p99 ms':>8}")
    for name, values in (("plain SQL", sql), ("API", through_api)):
        print(f"{name:12} {percentile(values, 0.5):8.1f} {percentile(values, 0.99):8.1f}")
    print(
        f"API / SQL: p50 {percentile(through_api, 0.5) / percentile(sql, 0.5):.2f}x, "
        f"p99 {percentile(through_api, 0.99) / percentile(sql, 0.99):.2f}x"
    )
    with psycopg.connect(PLAIN, autocommit=True) as connection:
        for p50, query in sorted(slowest, reverse=True)[:4]:
            count = connection.execute(
                "SELECT count(*) FROM passages WHERE tsv @@ websearch_to_tsquery('english', %s)",
                (query,),
            ).fetchone()
            share = 100 * (count[0] if count else 0) / _passages(connection)
            print(f"  slow: {query!r} p50 {p50:.1f} ms, matches {share:.0f}% of all passages")


def _passages(connection: psycopg.Connection[Any]) -> int:
    row = connection.execute("SELECT count(*) FROM passages").fetchone()
    return int(row[0]) if row else 1


def ask_overhead(key_id: uuid.UUID, plaintext: str, rounds: int) -> None:
    engine = make_engine(DATABASE)
    with psycopg.connect(PLAIN) as connection:
        first = connection.execute("SELECT id FROM jobs ORDER BY id LIMIT 1").fetchone()
        assert first is not None
        job_id = first[0]
    question = "When does the chef cook in the kitchen?"
    room = CONTEXT_TOKENS - 300 - TEMPLATE_TOKENS - text_tokens(SYSTEM, PROMPT, question)
    caller = Caller(key_id, "library", "", None)
    with make_session_factory(engine)() as session:
        found = retrieve(session, caller, str(job_id), question, room)
    engine.dispose()
    body = {
        "model": "fake-vlm",
        "messages": [
            {"role": "system", "content": SYSTEM},
            {"role": "user", "content": prompt_for(found, question)},
        ],
        "max_tokens": 300,
    }
    with fake_vlm(0.0) as model:
        extra = {
            "SCENECAP_VISION_BACKEND": "openai",
            "SCENECAP_VLM_BASE_URL": model,
            "SCENECAP_VLM_MODEL": "fake-vlm",
            "SCENECAP_VLM_CONTEXT_TOKENS": str(CONTEXT_TOKENS),
        }
        with (
            api(1, DATABASE, extra) as url,
            httpx.Client(base_url=url) as client,
            httpx.Client(base_url=model.rstrip("/") + "/") as direct,
        ):
            headers = {"Authorization": f"Bearer {plaintext}"}
            asked = timed(
                lambda: client.post(
                    f"/v2/media/categories/{job_id}/ask",
                    json={"question": question},
                    headers=headers,
                ).raise_for_status(),
                rounds,
            )
            straight = timed(
                lambda: direct.post("chat/completions", json=body).raise_for_status(), rounds
            )
    overhead = percentile(asked, 0.5) - percentile(straight, 0.5)
    print(f"\nask ({len(found.passages)} passages in the prompt, {rounds} questions)")
    print(f"{'':22} {'p50 ms':>8} {'p99 ms':>8}")
    for name, values in (("POST .../ask", asked), ("the model call alone", straight)):
        print(f"{name:22} {percentile(values, 0.5):8.1f} {percentile(values, 0.99):8.1f}")
    print(f"overhead beyond the model call (p50): {overhead:.1f} ms")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--jobs", type=int, default=10_000)
    parser.add_argument("--rounds", type=int, default=20, help="requests per query")
    args = parser.parse_args()
    key_id, plaintext = prepare(args.jobs)
    print(f"indexing: {indexing_ms(key_id, 200):.2f} ms per completed 60-passage job")
    search_latency(key_id, plaintext, args.rounds)
    ask_overhead(key_id, plaintext, args.rounds * 5)
    with contextlib.suppress(psycopg.Error), psycopg.connect(ADMIN_URL, autocommit=True) as c:
        c.execute("DROP DATABASE IF EXISTS scenecap_bench_search WITH (FORCE)")


if __name__ == "__main__":
    main()
