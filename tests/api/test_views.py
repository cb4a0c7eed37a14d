"""The hot reads (GET a job, list jobs) answer exactly what JobOut documents, though they are
built from database text rather than from the ORM's objects."""

from __future__ import annotations

import uuid
from typing import Any

import httpx
import pytest

from api.views import job_out
from db import frames as frame_repo
from db import jobs as job_repo
from db.keys import create_key
from scenecap.core.enums import JobStatus
from scenecap.schemas import JobOut

STATES = ["pending", "completed", "failed", "cancelled"]


@pytest.fixture
def jobs_in_every_state(session_factory: Any) -> tuple[str, dict[str, uuid.UUID]]:
    with session_factory.begin() as session:
        key, plaintext = create_key(session, "views")
        made = {}
        for state in STATES:
            job = job_repo.create_job(
                session,
                api_key_id=key.id,
                media_url=f"https://example.com/{state}.mp4",
                media_type="video",
                requested_metadata=["tags", "scene"],
                use_scenes=state == "completed",
                job_tag=f"tag-{state}",
                media_info={"duration": 12.5, "width": 640, "mime": "video/mp4"},
                status=JobStatus.PENDING if state == "pending" else JobStatus.PROCESSING,
            )
            made[state] = job.id
        frame_repo.record_stage_time(session, made["completed"], "captioning", 1.23456)
        frame_repo.record_stage_time(session, made["completed"], "downloading", 0.5)
        results = {"description": 'Ünïcode ✓ and "quotes"', "tags": [{"name": "red"}]}
        job_repo.complete_job(session, made["completed"], results=results, usage={"frames": 2})
        job_repo.fail_job(session, made["failed"], code="MEDIA_UNREADABLE", message="broken")
        job_repo.cancel_job(session, made["cancelled"])
    return plaintext, made


def orm_view(session_factory: Any, job_id: uuid.UUID, *, with_results: bool) -> dict[str, Any]:
    with session_factory() as session:
        job = job_repo.get_job(session, job_id, with_results=True)
        assert job is not None
        timings = frame_repo.stage_timings(session, job_id) if with_results else None
        return job_out(job, with_results=with_results, timings=timings).model_dump(mode="json")


@pytest.mark.parametrize("state", STATES)
def test_get_answers_what_jobout_documents(
    api_url: str,
    session_factory: Any,
    jobs_in_every_state: tuple[str, dict[str, uuid.UUID]],
    state: str,
) -> None:
    key, made = jobs_in_every_state
    answer = httpx.get(
        f"{api_url}/v2/media/categories/{made[state]}", headers={"Authorization": f"Bearer {key}"}
    )
    assert answer.status_code == 200
    got = JobOut.model_validate_json(answer.content).model_dump(mode="json")
    assert got == orm_view(session_factory, made[state], with_results=True)


def test_the_list_answers_what_jobout_documents(
    api_url: str,
    session_factory: Any,
    jobs_in_every_state: tuple[str, dict[str, uuid.UUID]],
) -> None:
    key, made = jobs_in_every_state
    headers = {"Authorization": f"Bearer {key}"}
    seen: list[dict[str, Any]] = []
    cursor = None
    while True:  # two per page: the cursor is exercised too
        params = {"limit": 2, **({"cursor": cursor} if cursor else {})}
        page = httpx.get(f"{api_url}/v2/media/categories", params=params, headers=headers).json()
        seen += page["data"]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert [JobOut.model_validate(j).model_dump(mode="json") for j in seen] == [
        orm_view(session_factory, made[state], with_results=False) for state in reversed(STATES)
    ]
