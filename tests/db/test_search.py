"""Search in the embedded default (SQLite FTS5) answers as PostgreSQL does for the same
web-search syntax, and the search migration indexes jobs completed before it."""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy import delete, func, select, text

from db import jobs as job_repo
from db import search
from db.keys import create_key
from db.models import Job, Passage
from db.session import make_engine, make_session_factory
from migrations.apply import upgrade
from scenecap.core.enums import JobStatus, utcnow
from tests.conftest import recreate_database

RESULTS = {
    "frames": [
        {"timestamp": 1.0, "caption": "A red kettle on a stove in a small kitchen."},
        {"timestamp": 2.0, "caption": "A red mug; far from it, on a shelf, a kettle."},
        {"timestamp": 3.0, "caption": "A bicycle leans against the wall."},
        {"timestamp": 4.0, "caption": "A blue kettle, poured."},
    ],
    "transcript": {"segments": [{"start": 5.0, "end": 7.5, "text": "the water is boiling"}]},
}


def complete(session: Any, key_id: uuid.UUID, results: dict[str, Any]) -> uuid.UUID:
    job = job_repo.create_job(
        session,
        api_key_id=key_id,
        media_url="https://example.com/a.mp4",
        media_type="video",
        requested_metadata=["tags"],
        use_scenes=False,
        status=JobStatus.PROCESSING,
    )
    job_repo.complete_job(session, job.id, results=results, usage={})
    return job.id


@pytest.fixture
def sqlite(tmp_path: Path) -> Any:
    url = f"sqlite:///{tmp_path / 'dev.db'}"
    upgrade(url)
    engine = make_engine(url)
    yield make_session_factory(engine)
    engine.dispose()


@pytest.mark.parametrize(
    ("query", "starts"),
    [
        ("kettle", [1.0, 2.0, 4.0]),
        ('"red kettle"', [1.0]),
        ("kettle -red", [4.0]),
        ("bicycle or poured", [3.0, 4.0]),
        ("kettle bicycle", []),
        ("boils", [5.0]),  # stems, as PostgreSQL's english configuration does
        ('" OR NEAR(', []),  # FTS5 syntax typed by a user is words, not an error
    ],
)
def test_sqlite_search_speaks_the_same_syntax(sqlite: Any, query: str, starts: list[float]) -> None:
    with sqlite.begin() as session:
        key, _plaintext = create_key(session, "dev")
        complete(session, key.id, RESULTS)
    with sqlite() as session:
        found = search.search(session, key.id, query, limit=10)
    assert sorted(h.start for h in found) == starts
    for hit in found:
        assert "<b>" in hit.highlight


def test_sqlite_ranks_close_words_first_and_pages_by_cursor(sqlite: Any) -> None:
    with sqlite.begin() as session:
        key, _plaintext = create_key(session, "dev")
        job_id = complete(session, key.id, RESULTS)
        other, _ = create_key(session, "other")
    with sqlite() as session:
        first = search.search(session, key.id, "red kettle", limit=1)
        [second] = search.search(
            session, key.id, "red kettle", limit=1, after=(first[0].score, first[0].id)
        )
        assert [first[0].start, second.start] == [1.0, 2.0]
        assert search.search(session, other.id, "kettle", limit=10) == []
        assert search.best_in_job(session, job_id, "where is the bicycle?", limit=3)
    with sqlite.begin() as session:  # a purge: the FTS index forgets the passages too
        session.execute(delete(Job).where(Job.id == job_id))
    with sqlite() as session:
        assert session.scalar(select(func.count()).select_from(Passage)) == 0
        assert session.scalar(text("SELECT count(*) FROM passages_fts")) == 0


@pytest.mark.parametrize(
    ("query", "match"),
    [
        ("red kettle", '"red" AND "kettle"'),
        ('"red kettle" mug', '"red kettle" AND "mug"'),
        ("red or blue kettle", '("red" OR "blue") AND "kettle"'),
        ("kettle -red -blue", '("kettle") NOT ("red" OR "blue")'),
        ('say "hi', '"say" AND "hi"'),
        ("or -", '"-"'),
        ("", ""),
    ],
)
def test_fts5_query_translation(query: str, match: str) -> None:
    assert search.fts5_query(query) == match


@pytest.mark.integration
def test_the_migration_indexes_jobs_completed_before_it() -> None:
    url = recreate_database("scenecap_search_backfill")
    upgrade(url, "0006")
    engine = make_engine(url)
    key_id, job_id, now = uuid.uuid4(), uuid.uuid4(), utcnow()
    # Written as the schema at revision 0006 had them (the models are the newest schema).
    keys = sa.table(
        "api_keys",
        *(sa.column(c) for c in ("id", "name", "key_hash", "key_prefix")),
        sa.column("webhook_secret"),
        sa.column("created_at"),
    )
    jobs = sa.table(
        "jobs",
        *(sa.column(c) for c in ("id", "api_key_id", "kind", "status", "stage")),
        *(sa.column(c) for c in ("percent_complete", "media_url", "media_type", "use_scenes")),
        *(sa.column(c) for c in ("max_frames", "attempts", "created_at", "updated_at")),
        sa.column("requested_metadata", sa.JSON()),
        sa.column("results", sa.JSON()),
    )
    try:
        with engine.begin() as connection:
            connection.execute(
                keys.insert().values(
                    id=key_id,
                    name="old",
                    key_hash="x" * 64,
                    key_prefix="sc_old",
                    webhook_secret="whsec_x",
                    created_at=now,
                )
            )
            connection.execute(
                jobs.insert().values(
                    id=job_id,
                    api_key_id=key_id,
                    kind="categories",
                    status="COMPLETED",
                    stage="done",
                    percent_complete=100,
                    media_url="https://example.com/a.mp4",
                    media_type="video",
                    use_scenes=False,
                    max_frames=60,
                    attempts=1,
                    created_at=now,
                    updated_at=now,
                    requested_metadata=["tags"],
                    results=RESULTS,
                )
            )
        upgrade(url)
        with make_session_factory(engine)() as session:
            found = search.search(session, key_id, "kettle", limit=10)
        assert sorted(h.start for h in found) == [1.0, 2.0, 4.0]
    finally:
        engine.dispose()


@pytest.mark.integration
def test_a_key_searches_only_its_own_rows_through_the_key_index() -> None:
    """A key with a few passages among many of another key's is served by the (key, words)
    index: its search never scans the other key's rows (issue: a seq scan over everyone's)."""
    url = recreate_database("scenecap_search_keyed")
    upgrade(url)
    engine = make_engine(url)
    factory = make_session_factory(engine)
    try:
        with factory.begin() as session:
            big, _ = create_key(session, "big")
            small, _ = create_key(session, "small")
            crowded = complete(session, big.id, {})
            own = complete(session, small.id, {})
            session.execute(
                text(
                    'INSERT INTO passages (job_id, api_key_id, kind, start, "end", text) '
                    "SELECT :job, :key, 'frame', n, n + 1, 'a red kettle number ' || n "
                    "FROM generate_series(1, :count) n"
                ),
                [
                    {"job": crowded, "key": big.id, "count": 20_000},
                    {"job": own, "key": small.id, "count": 30},
                ],
            )
        with engine.connect() as connection:
            connection.execute(text("ANALYZE passages"))
            # A table this small may be cheaper to scan whole; what is asserted is that the
            # key's index can serve the search (bench/abuse.py measures it at 600,000 rows).
            connection.execute(text("SET enable_seqscan = off"))
            plan = connection.execute(
                text("EXPLAIN (FORMAT JSON) " + search._POSTGRES),
                {"q": "kettle", "key": small.id, "job": None, "limit": 20}
                | {"after_score": None, "after_id": None},
            ).scalar_one()
        with factory() as session:
            hits = search.search(session, small.id, "kettle", limit=50)
    finally:
        engine.dispose()
    scans = set(plan_nodes(plan))
    assert ("Bitmap Index Scan", "ix_passages_key_tsv") in scans, scans
    assert ("Seq Scan", "passages") not in scans
    assert len(hits) == 30 and {hit.job_id for hit in hits} == {own}


def plan_nodes(plan: Any) -> Any:
    """(node type, relation or index) for every node of an EXPLAIN (FORMAT JSON) plan."""
    if isinstance(plan, list):
        for part in plan:
            yield from plan_nodes(part)
    elif isinstance(plan, dict):
        if "Node Type" in plan:
            yield plan["Node Type"], plan.get("Index Name") or plan.get("Relation Name")
        for value in plan.values():
            yield from plan_nodes(value)
