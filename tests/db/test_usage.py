"""Usage sums and the quota's count read the same in the embedded default (SQLite) as in
PostgreSQL (which the API tests cover): JSON figures, UTC days, per key."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

from db import jobs as job_repo
from db import usage
from db.keys import create_key
from db.session import make_engine, make_session_factory
from migrations.apply import upgrade
from scenecap.core.enums import JobStatus


def test_sqlite_sums_usage_by_day_and_key(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'dev.db'}"
    upgrade(url)
    engine = make_engine(url)
    sessions = make_session_factory(engine)
    with sessions.begin() as session:
        key, _plaintext = create_key(session, "dev")
        other, _ = create_key(session, "other")
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
            )
            figures = {"frames": 3, "prompt_tokens": tokens - 2, "completion_tokens": 2}
            job_repo.complete_job(
                session, job.id, results={}, usage={**figures, "total_tokens": tokens}
            )
    today = datetime.now(UTC).date()
    with sessions() as session:
        [row] = usage.by_day(session, key.id, today - timedelta(days=1), today)
        assert (row["day"], row["status"], row["jobs"]) == (today.isoformat(), "COMPLETED", 2)
        assert (row["frames"], row["total_tokens"], row["media_seconds"]) == (6, 42, 25.0)
        assert usage.by_day(session, key.id, today - timedelta(days=9), today - timedelta(1)) == []
        assert usage.tokens_today(session, key.id) == 42
        by_key = {r["key"]: r["total_tokens"] for r in usage.by_key(session)}
        assert by_key == {"dev": 42, "other": 1000}
    engine.dispose()
