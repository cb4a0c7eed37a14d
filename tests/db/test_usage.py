"""The spend ledger, usage sums and the quota's room read the same in the embedded default
(SQLite) as in PostgreSQL (which the API tests cover): per key and UTC day, whatever
becomes of the jobs."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

from db import jobs as job_repo
from db import spend, usage
from db.keys import create_key
from db.session import make_engine, make_session_factory
from db.spend import Spent
from migrations.apply import upgrade
from scenecap.core.enums import JobStatus


def test_sqlite_ledger_sums_by_day_and_key_and_outlives_purges(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'dev.db'}"
    upgrade(url)
    engine = make_engine(url)
    sessions = make_session_factory(engine)
    today = datetime.now(UTC).date()
    with sessions.begin() as session:
        key, _plaintext = create_key(session, "dev")
        other, _ = create_key(session, "other")
        made = []
        for owner, tokens in ((key, 12), (key, 30), (other, 1000)):
            job = job_repo.create_job(
                session,
                api_key_id=owner.id,
                media_url="https://example.com/a.mp4",
                media_type="video",
                requested_metadata=["tags"],
                use_scenes=False,
                status=JobStatus.PROCESSING,
                media_info={"duration": 12.5},
                tokens_reserved=500 if owner is key else None,
                tokens_spent=tokens,
            )
            spend.record(session, owner.id, Spent(tokens - 2, 2, frames=3))
            made.append(job.id)
        job_repo.complete_job(session, made[0], results={}, usage={"total_tokens": 12})
        spend.record(session, key.id, Spent(5, 0), day=today - timedelta(days=3))
    with sessions() as session:
        days = usage.by_day(session, key.id, today - timedelta(days=1), today)
        [(day, figures)] = days.items()
        assert day == today.isoformat()
        assert figures["jobs"] == {"COMPLETED": 1, "PROCESSING": 1}
        assert (figures["frames"], figures["total_tokens"], figures["media_seconds"]) == (
            6,
            42,
            25.0,
        )
        assert (
            usage.by_day(session, key.id, today - timedelta(days=9), today)[
                (today - timedelta(days=3)).isoformat()
            ]["total_tokens"]
            == 5
        )
        # Today's spend, and what the one active job still holds: its reservation less what
        # it spent.
        assert spend.standing(session, key.id).used == 42 + (500 - 30)
        by_key = {r["key"]: r["total_tokens"] for r in usage.by_key(session)}
        assert by_key == {"dev": 47, "other": 1000}
    with sessions.begin() as session:
        for job_id in made:
            job_repo.purge_job(session, job_id)
    with sessions() as session:
        assert spend.standing(session, key.id).used == 42, "a purge gives no spend back"
    engine.dispose()
