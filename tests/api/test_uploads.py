"""Uploads and the media store: files sent directly, used by their owner, expired, purged;
a job's media fetched once and kept in the store."""

from __future__ import annotations

import base64
import hashlib
import http.server
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import update

from api.main import create_app
from db.jobs import get_job
from db.models import Job, Upload
from db.session import Message
from scenecap.core.settings import Settings
from scenecap.core.tasks import PROCESS_JOB
from scenecap.store import open_store, paths
from tests.api.test_categories import assert_error
from tests.conftest import is_terminal, poll_job, serve_app, serve_http
from worker.maintenance.retention import expire_stored_media
from worker.submit import JobQueue

pytestmark = pytest.mark.usefixtures("worker")


def upload(
    client: httpx.Client, data: bytes | Iterator[bytes], content_type: str
) -> httpx.Response:
    return client.post("/v2/media/uploads", content=data, headers={"Content-Type": content_type})


@pytest.fixture
def sample(media_dir: Path) -> bytes:
    return (media_dir / "sample.mp4").read_bytes()


class TestUploading:
    def test_an_upload_is_stored_with_its_size_and_checksum(
        self, client: httpx.Client, sample: bytes, settings: Settings
    ) -> None:
        response = upload(client, sample, "video/mp4")
        assert response.status_code == 201, response.text
        body = response.json()
        assert body["media_url"] == f"upload://{body['upload_id']}"
        assert body["bytes"] == len(sample)
        assert body["sha256"] == hashlib.sha256(sample).hexdigest()
        assert body["content_type"] == "video/mp4"
        expires = datetime.fromisoformat(body["expires_at"])
        assert abs(expires - datetime.now(UTC) - timedelta(hours=24)) < timedelta(minutes=5)
        stored = open_store(settings).get(paths.upload(uuid.UUID(body["upload_id"])))
        assert stored == sample

    def test_a_streamed_upload_without_a_length_is_taken_too(
        self, client: httpx.Client, sample: bytes
    ) -> None:
        chunked = (sample[i : i + 7000] for i in range(0, len(sample), 7000))
        response = upload(client, chunked, "video/mp4")
        assert response.status_code == 201, response.text
        assert response.json()["bytes"] == len(sample)

    def test_bytes_that_are_neither_image_nor_video_are_refused(
        self, client: httpx.Client, settings: Settings
    ) -> None:
        before = list(open_store(settings).list("uploads/"))
        html = b"<!doctype html><html>" + b"x" * 10_000
        assert_error(upload(client, html, "video/mp4"), 415, "UNSUPPORTED_MEDIA")
        assert_error(upload(client, b"\x00" * 10, "text/plain"), 415, "UNSUPPORTED_MEDIA")
        assert_error(upload(client, b"", "video/mp4"), 415, "UNSUPPORTED_MEDIA")
        assert list(open_store(settings).list("uploads/")) == before

    @pytest.mark.parametrize("declared", [True, False], ids=["with-length", "chunked"])
    def test_an_upload_over_the_limit_is_cut_off_and_leaves_nothing(
        self,
        settings: Settings,
        new_key: Callable[[], str],
        sample: bytes,
        declared: bool,
    ) -> None:
        small = settings.model_copy(update={"max_media_bytes": 1_000_000})
        app = create_app(small)
        big = sample * (1_200_000 // len(sample) + 1)
        body: bytes | Iterator[bytes] = (
            big if declared else (big[i : i + 65536] for i in range(0, len(big), 65536))
        )
        before = list(open_store(settings).list("uploads/"))
        with serve_app(app) as url:
            headers = {"Authorization": f"Bearer {new_key()}", "Content-Type": "video/mp4"}
            response = httpx.post(f"{url}/v2/media/uploads", content=body, headers=headers)
        error = assert_error(response, 413, "MEDIA_TOO_LARGE")
        assert error["details"]["limit"] == 1_000_000
        assert list(open_store(settings).list("uploads/")) == before


class TestUsing:
    def test_the_owner_submits_an_upload_and_the_job_reads_it(
        self, client: httpx.Client, other_client: httpx.Client, sample: bytes, fake_vlm: Any
    ) -> None:
        media_url = upload(client, sample, "video/mp4").json()["media_url"]
        created = client.post(
            "/v2/media/categories", json={"media_url": media_url, "max_frames": 2}
        )
        assert created.status_code == 202, created.text
        job = poll_job(client, created.json()["job_id"], until=is_terminal)
        assert job["status"] == "COMPLETED" and job["media_url"] == media_url
        assert job["media"]["duration"] == 12.0

        refused = other_client.post("/v2/media/categories", json={"media_url": media_url})
        assert_error(refused, 404, "UPLOAD_NOT_FOUND")
        nonsense = client.post("/v2/media/categories", json={"media_url": "upload://nonsense"})
        assert_error(nonsense, 404, "UPLOAD_NOT_FOUND")

    def test_a_completion_reads_an_uploaded_image(
        self, client: httpx.Client, media_dir: Path, fake_vlm: Any
    ) -> None:
        media_url = upload(client, (media_dir / "purple.png").read_bytes(), "image/png").json()[
            "media_url"
        ]
        chat = {
            "model": "fake-vlm",
            "max_tokens": 50,
            "messages": [
                {
                    "role": "user",
                    "content": [{"type": "image_url", "image_url": {"url": media_url}}],
                }
            ],
        }
        answer = client.post("/v2/media/completions", json=chat)
        assert answer.status_code == 200, answer.text
        assert "purple" in answer.json()["choices"][0]["message"]["content"]

    def test_an_expired_upload_is_refused_then_deleted(
        self, client: httpx.Client, sample: bytes, session_factory: Any, settings: Settings
    ) -> None:
        body = upload(client, sample, "video/mp4").json()
        upload_id = uuid.UUID(body["upload_id"])
        with session_factory.begin() as session:
            session.execute(
                update(Upload)
                .where(Upload.id == upload_id)
                .values(expires_at=datetime.now(UTC) - timedelta(seconds=1))
            )
        refused = client.post("/v2/media/categories", json={"media_url": body["media_url"]})
        assert_error(refused, 404, "UPLOAD_NOT_FOUND")
        store = open_store(settings)
        expire_stored_media(session_factory, store, settings)
        assert store.size(paths.upload(upload_id)) is None
        with session_factory() as session:
            assert session.get(Upload, upload_id) is None


class TestStoredMedia:
    def test_a_jobs_media_is_fetched_once_then_read_from_the_store(
        self,
        client: httpx.Client,
        sample: bytes,
        settings: Settings,
        session_factory: Any,
        fake_vlm: Any,
    ) -> None:
        gets: list[str] = []

        class Counting(http.server.BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: Any) -> None:
                return None

            def do_GET(self) -> None:
                gets.append(self.path)
                self.send_response(200)
                self.send_header("Content-Type", "video/mp4")
                self.send_header("Content-Length", str(len(sample)))
                self.end_headers()
                self.wfile.write(sample)

        with serve_http(Counting) as origin:
            # The model is down for longer than the job's attempts: it fails after fetching.
            fake_vlm.fail_next = 100
            job_id = client.post(
                "/v2/media/categories", json={"media_url": f"{origin}/v.mp4", "max_frames": 2}
            ).json()["job_id"]
            failed = poll_job(client, job_id, until=is_terminal)
            assert failed["error"]["code"] == "VISION_BACKEND_UNAVAILABLE"
            fetched = len(gets)  # the submit-time check, and the worker's one fetch
            stored = open_store(settings).get(paths.media(uuid.UUID(job_id)))
            assert stored == sample

            fake_vlm.fail_next = 0  # the model is back: run the job again
            with session_factory.begin() as session:
                session.execute(
                    update(Job)
                    .where(Job.id == uuid.UUID(job_id))
                    .values(status="PENDING", attempts=0)
                )
            JobQueue.of(settings).send(Message(PROCESS_JOB, (job_id,)))
            assert poll_job(client, job_id, until=is_terminal)["status"] == "COMPLETED"
        assert len(gets) == fetched, "the second run went back to the origin"

    def test_a_data_uri_leaves_the_database_for_the_store(
        self,
        client: httpx.Client,
        sample: bytes,
        settings: Settings,
        session_factory: Any,
        fake_vlm: Any,
    ) -> None:
        data = f"data:video/mp4;base64,{base64.b64encode(sample).decode()}"
        job_id = client.post(
            "/v2/media/categories", json={"media_url": data, "max_frames": 1}
        ).json()["job_id"]
        assert poll_job(client, job_id, until=is_terminal)["status"] == "COMPLETED"
        with session_factory() as session:
            assert get_job(session, uuid.UUID(job_id), with_media=True).media_data is None  # type: ignore[union-attr]
        assert open_store(settings).get(paths.media(uuid.UUID(job_id))) == sample

    def test_media_is_deleted_after_retention_and_thumbnails_stay(
        self,
        client: httpx.Client,
        media_server: str,
        settings: Settings,
        session_factory: Any,
        fake_vlm: Any,
    ) -> None:
        job_id = client.post(
            "/v2/media/categories",
            json={"media_url": f"{media_server}/sample.mp4", "max_frames": 2},
        ).json()["job_id"]
        assert poll_job(client, job_id, until=is_terminal)["status"] == "COMPLETED"
        job = uuid.UUID(job_id)
        store = open_store(settings)
        assert store.size(paths.media(job)) is not None
        long_ago = datetime.now(UTC) - timedelta(hours=settings.media_retention_hours + 1)
        with session_factory.begin() as session:
            session.execute(update(Job).where(Job.id == job).values(completed_at=long_ago))
        expire_stored_media(session_factory, store, settings)
        assert store.size(paths.media(job)) is None
        assert store.size(paths.thumbnail(job, 0)) is not None, "the report keeps its pictures"
        with session_factory() as session:
            row = session.get(Job, job)
            assert row is not None and row.media_deleted_at is not None


class TestPurge:
    def test_a_finished_job_is_purged_with_everything_stored_for_it(
        self, client: httpx.Client, media_server: str, settings: Settings, fake_vlm: Any
    ) -> None:
        job_id = client.post(
            "/v2/media/categories",
            json={"media_url": f"{media_server}/sample.mp4", "max_frames": 2},
        ).json()["job_id"]
        assert poll_job(client, job_id, until=is_terminal)["status"] == "COMPLETED"
        store = open_store(settings)
        assert list(store.list(paths.job(uuid.UUID(job_id))))
        purged = client.delete(f"/v2/media/categories/{job_id}", params={"purge": "true"})
        assert purged.status_code == 204 and purged.content == b""
        assert_error(client.get(f"/v2/media/categories/{job_id}"), 404, "JOB_NOT_FOUND")
        assert list(store.list(paths.job(uuid.UUID(job_id)))) == []
        again = client.delete(f"/v2/media/categories/{job_id}", params={"purge": "true"})
        assert_error(again, 404, "JOB_NOT_FOUND")

    def test_a_running_job_is_not_purged(
        self, client: httpx.Client, media_server: str, fake_vlm: Any
    ) -> None:
        fake_vlm.delay = 1.0
        job_id = client.post(
            "/v2/media/categories",
            json={"media_url": f"{media_server}/sample.mp4", "max_frames": 4},
        ).json()["job_id"]
        refused = client.delete(f"/v2/media/categories/{job_id}", params={"purge": "true"})
        assert_error(refused, 409, "JOB_NOT_FINISHED")
        assert client.get(f"/v2/media/categories/{job_id}").status_code == 200

    def test_another_keys_job_is_not_found(
        self, client: httpx.Client, other_client: httpx.Client, media_server: str, fake_vlm: Any
    ) -> None:
        job_id = client.post(
            "/v2/media/categories",
            json={"media_url": f"{media_server}/sample.mp4", "max_frames": 1},
        ).json()["job_id"]
        poll_job(client, job_id, until=is_terminal)
        refused = other_client.delete(f"/v2/media/categories/{job_id}", params={"purge": "true"})
        assert_error(refused, 404, "JOB_NOT_FOUND")


class TestNames:
    def test_an_upload_keeps_its_name_as_the_jobs_media_name(
        self, client: httpx.Client, sample: bytes, fake_vlm: Any, api_url: str
    ) -> None:
        named = client.post(
            "/v2/media/uploads",
            content=sample,
            headers={"Content-Type": "video/mp4"},
            params={"filename": "C:\\fakepath\\Holiday\tclip.mp4"},
        ).json()
        assert named["name"] == "Holidayclip.mp4"  # its last path part, no control character
        by_header = client.post(
            "/v2/media/uploads",
            content=sample,
            headers={
                "Content-Type": "video/mp4",
                "Content-Disposition": "attachment; filename*=UTF-8''caf%C3%A9%20night.mp4",
            },
        ).json()
        assert by_header["name"] == "café night.mp4"
        created = client.post(
            "/v2/media/categories",
            json={"media_url": by_header["media_url"], "max_frames": 1, "job_tag": "named"},
        ).json()
        job = poll_job(client, created["job_id"], until=is_terminal)
        assert job["media_name"] == "café night.mp4"
        listed = client.get("/v2/media/categories", params={"job_tag": "named"}).json()
        assert [j["media_name"] for j in listed["data"]] == ["café night.mp4"]
        hits = client.get(
            "/v2/media/search", params={"q": "background", "job_id": job["job_id"]}
        ).json()
        assert hits["data"] and {h["media_name"] for h in hits["data"]} == {"café night.mp4"}
        report = client.get(f"/v2/media/categories/{job['job_id']}/report").text
        assert "<h1>café night.mp4</h1>" in report

    def test_a_url_job_is_named_by_its_path(
        self, client: httpx.Client, media_server: str, fake_vlm: Any
    ) -> None:
        created = client.post(
            "/v2/media/categories", json={"media_url": f"{media_server}/sample.mp4?x=1"}
        ).json()
        job = client.get(f"/v2/media/categories/{created['job_id']}").json()
        assert job["media_name"] == "sample.mp4"
