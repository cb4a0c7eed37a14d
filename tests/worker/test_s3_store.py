"""The whole service on the S3 media store (a real SeaweedFS server): uploads, jobs whose
worker reads their media from the bucket, thumbnails, purge."""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from api.main import create_app
from db.keys import create_key
from scenecap.core.settings import Settings
from scenecap.store import open_store, paths
from tests.conftest import is_terminal, poll_job, serve_app
from tests.support.isolated import IsolatedStack, isolated_stack
from tests.support.seaweedfs import REGION, S3Server


@pytest.fixture
def stack(settings: Settings, tmp_path: Path, s3_server: S3Server) -> Iterator[IsolatedStack]:
    yield from isolated_stack(
        settings,
        tmp_path,
        "redis://127.0.0.1:6379/10",
        media_store=s3_server.store_url(f"e2e-{uuid.uuid4().hex}"),
        s3_endpoint_url=s3_server.endpoint_url,
        s3_region=REGION,
        vlm_max_concurrency=4,
    )


def test_a_job_on_s3_from_upload_to_purge(
    stack: IsolatedStack, media_dir: Path, media_server: str, fake_vlm: Any
) -> None:
    stack.start_worker()
    with stack.session_factory.begin() as session:
        _key, plaintext = create_key(session, "s3")
    store = open_store(stack.settings)
    headers = {"Authorization": f"Bearer {plaintext}"}
    with (
        serve_app(create_app(stack.settings)) as url,
        httpx.Client(base_url=url, headers=headers, timeout=60) as client,
    ):
        sample = (media_dir / "sample.mp4").read_bytes()
        uploaded = client.post(
            "/v2/media/uploads", content=sample, headers={"Content-Type": "video/mp4"}
        ).json()
        assert store.get(paths.upload(uuid.UUID(uploaded["upload_id"]))) == sample

        jobs = [
            client.post(
                "/v2/media/categories", json={"media_url": media_url, "max_frames": 3}
            ).json()["job_id"]
            for media_url in (uploaded["media_url"], f"{media_server}/sample.mp4")
        ]
        for job_id in jobs:
            job = poll_job(client, job_id, until=is_terminal)
            assert job["status"] == "COMPLETED", job["error"]
            stored = sorted(o.key for o in store.list(paths.job(uuid.UUID(job_id))))
            assert stored == [
                paths.media(uuid.UUID(job_id)),
                *sorted(paths.thumbnail(uuid.UUID(job_id), i) for i in range(3)),
            ]
            assert store.get(paths.media(uuid.UUID(job_id))) == sample
            report = client.get(f"/v2/media/categories/{job_id}/report").text
            pictures = re.findall(r"<img [^>]*src='([^']+)'", report)
            assert len(pictures) == 3
            picture = client.get(pictures[0].replace("&amp;", "&"))  # read from the bucket
            assert picture.status_code == 200 and picture.content.startswith(b"\xff\xd8")

        assert client.get("/readyz").json()["checks"]["store"] == "ok"
        purged = client.delete(f"/v2/media/categories/{jobs[0]}", params={"purge": "true"})
        assert purged.status_code == 204
        assert list(store.list(paths.job(uuid.UUID(jobs[0])))) == []
    store.delete_prefix("")


def test_a_segment_job_on_s3_reads_its_media_from_the_bucket_once_per_machine(
    stack: IsolatedStack, media_server: str, fake_vlm: Any
) -> None:
    """Work items on S3 download the job's media into the machine's cache (the worker's
    TMPDIR) once, and read the probe from the bucket rather than demux again."""
    stack.start_worker()
    with stack.session_factory.begin() as session:
        _key, plaintext = create_key(session, "s3-segments")
    store = open_store(stack.settings)
    headers = {"Authorization": f"Bearer {plaintext}"}
    with (
        serve_app(create_app(stack.settings)) as url,
        httpx.Client(base_url=url, headers=headers, timeout=60) as client,
    ):
        body = {
            "media_url": f"{media_server}/long.mp4",
            "segment_seconds": 10,
            "frames_per_segment": 2,
            "use_scenes": True,
        }
        job_id = client.post("/v2/media/categories", json=body).json()["job_id"]
        job = poll_job(client, job_id, until=is_terminal)
        assert job["status"] == "COMPLETED", job["error"]
        segments = job["results"]["segments"]
        stored = {o.key for o in store.list(paths.job(uuid.UUID(job_id)))}
        assert paths.probe(uuid.UUID(job_id)) in stored
        assert {paths.thumbnail(uuid.UUID(job_id), s["index"]) for s in segments} <= stored
        cached = list((stack.log.parent / "scenecap-media").iterdir())
        assert [entry.name for entry in cached] == [job_id], "one copy, whole, no partials"
    store.delete_prefix("")


def test_a_store_that_is_down_fails_what_needs_it_with_its_code(
    settings: Settings, tmp_path: Path, media_dir: Path, media_server: str, fake_vlm: Any
) -> None:
    down = isolated_stack(
        settings,
        tmp_path,
        "redis://127.0.0.1:6379/10",
        media_store="s3://bucket/prefix",
        s3_endpoint_url="http://127.0.0.1:9",  # nothing listens there
        s3_region=REGION,
    )
    stack = next(down)
    try:
        stack.start_worker()
        with stack.session_factory.begin() as session:
            _key, plaintext = create_key(session, "s3-down")
        headers = {"Authorization": f"Bearer {plaintext}"}
        with (
            serve_app(create_app(stack.settings)) as url,
            httpx.Client(base_url=url, headers=headers, timeout=60) as client,
        ):
            ready = client.get("/readyz")
            assert ready.status_code == 503
            assert ready.json()["error"]["code"] == "STORE_UNAVAILABLE"
            refused = client.post(
                "/v2/media/uploads",
                content=(media_dir / "sample.mp4").read_bytes(),
                headers={"Content-Type": "video/mp4"},
            )
            assert (
                refused.status_code == 503
                and refused.json()["error"]["code"] == "STORE_UNAVAILABLE"
            )
            job_id = client.post(
                "/v2/media/categories", json={"media_url": f"{media_server}/sample.mp4"}
            ).json()["job_id"]
            job = poll_job(client, job_id, until=is_terminal, timeout=120)
            assert (job["status"], job["error"]["code"]) == ("FAILED", "STORE_UNAVAILABLE")
    finally:
        next(down, None)
