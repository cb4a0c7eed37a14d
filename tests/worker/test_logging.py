"""Worker logs: one JSON object per line, and every line about a job's work names the job."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import is_terminal, poll_job, wait_for

pytestmark = pytest.mark.usefixtures("worker")


def test_worker_logs_are_json_lines_tagged_with_the_job_id(
    client: httpx.Client, media_server: str, fake_vlm: Any, worker_log: Path
) -> None:
    start = worker_log.stat().st_size
    job_id = client.post(
        "/v2/media/categories",
        json={"media_url": f"{media_server}/sample.mp4", "max_frames": 2, "webhook_url": None},
    ).json()["job_id"]
    assert poll_job(client, job_id, until=is_terminal)["status"] == "COMPLETED"

    def logged() -> list[dict[str, Any]]:
        with worker_log.open("rb") as log:
            log.seek(start)
            lines = log.read().decode().splitlines()
        entries = [json.loads(line) for line in lines]  # every line is a JSON object
        done = any(f"job {job_id} completed" in e["message"] for e in entries)
        return entries if done else []

    entries = wait_for(logged, timeout=30, what="the worker to log the job's completion")
    assert all({"time", "level", "logger", "process", "message"} <= set(e) for e in entries)
    about_the_job = [e for e in entries if job_id in e["message"]]
    assert about_the_job and all(e.get("job_id") == job_id for e in about_the_job)
    tagged = [e for e in entries if e.get("job_id") == job_id]
    assert {e["logger"] for e in tagged} >= {"worker.job.outcome"}
