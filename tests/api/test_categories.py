"""Contract tests for /v2/media/categories: every status code and error code of docs/api.md."""

from __future__ import annotations

import base64
import uuid
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import is_terminal, poll_job
from tests.worker.test_jobs_end_to_end import submit

pytestmark = pytest.mark.usefixtures("worker")


def assert_error(response: httpx.Response, status: int, code: str) -> dict[str, Any]:
    assert response.status_code == status, response.text
    body = response.json()
    assert set(body) == {"error"}
    assert body["error"]["code"] == code
    assert isinstance(body["error"]["message"], str) and body["error"]["message"]
    assert isinstance(body["error"]["details"], dict)
    return body["error"]


class TestAuthentication:
    def test_missing_key_is_401_with_bearer_challenge(self, api_url: str) -> None:
        response = httpx.get(f"{api_url}/v2/media/categories")
        assert_error(response, 401, "UNAUTHENTICATED")
        assert response.headers["www-authenticate"] == "Bearer"

    def test_unknown_key_is_401(self, api_url: str) -> None:
        response = httpx.get(
            f"{api_url}/v2/media/categories", headers={"Authorization": "Bearer sc_nope"}
        )
        assert_error(response, 401, "UNAUTHENTICATED")
        assert response.headers["www-authenticate"] == "Bearer"

    def test_health_needs_no_key(self, api_url: str) -> None:
        assert httpx.get(f"{api_url}/healthz").json() == {"status": "ok", "checks": {}}


class TestSubmit:
    def test_video_is_accepted_with_location(self, client: httpx.Client, media_server: str) -> None:
        response = client.post(
            "/v2/media/categories", json={"media_url": f"{media_server}/sample.mp4"}
        )
        assert response.status_code == 202, response.text
        body = response.json()
        assert body == {
            "job_id": body["job_id"],
            "status": "PENDING",
            "percent_complete": 0,
            "media_type": "video",
        }
        assert response.headers["location"] == f"/v2/media/categories/{body['job_id']}"

    def test_data_uri_video_is_accepted(self, client: httpx.Client, media_dir: Path) -> None:
        payload = base64.b64encode((media_dir / "sample.mp4").read_bytes()).decode()
        response = client.post(
            "/v2/media/categories", json={"media_url": f"data:video/mp4;base64,{payload}"}
        )
        assert response.status_code == 202, response.text
        job = client.get(response.headers["location"]).json()
        assert job["media_url"].startswith("data:video/mp4;base64,")
        assert len(job["media_url"]) < 100, "the job must not echo the whole upload"

    @pytest.mark.parametrize(
        ("field", "value"),
        [
            ("metadata", ["categories", "emotions"]),
            ("metadata", []),
            ("max_frames", 0),
            ("max_frames", 61),
            ("max_frames", "ten"),
            ("use_scenes", "yes"),
            ("colour", "red"),
        ],
        ids=[
            "unknown-metadata",
            "empty-metadata",
            "max-frames-0",
            "max-frames-61",
            "max-frames-string",
            "use-scenes-string",
            "unknown-field",
        ],
    )
    def test_invalid_field_is_422(
        self, client: httpx.Client, media_server: str, field: str, value: Any
    ) -> None:
        body = {"media_url": f"{media_server}/sample.mp4", field: value}
        error = assert_error(
            client.post("/v2/media/categories", json=body), 422, "VALIDATION_ERROR"
        )
        assert error["details"]["errors"][0]["field"].startswith(field)

    @pytest.mark.parametrize(
        "options",
        [
            {"scene_threshold": 30},
            {"min_scene_seconds": 1.0},
            {"use_scenes": True, "scene_threshold": 0},
            {"use_scenes": True, "scene_threshold": 300},
            {"use_scenes": True, "min_scene_seconds": -1},
            {"use_scenes": True, "min_scene_seconds": 61},
        ],
        ids=["threshold-without-scenes", "min-without-scenes", "t0", "t300", "m-1", "m61"],
    )
    def test_scene_options_are_checked(
        self, client: httpx.Client, media_server: str, options: dict[str, Any]
    ) -> None:
        body = {"media_url": f"{media_server}/sample.mp4", **options}
        assert_error(client.post("/v2/media/categories", json=body), 422, "VALIDATION_ERROR")

    @pytest.mark.usefixtures("worker")
    def test_a_jobs_scene_options_are_its_own(
        self, client: httpx.Client, media_server: str, fake_vlm: Any
    ) -> None:
        body = {"media_url": f"{media_server}/sample.mp4", "use_scenes": True, "max_frames": 8}
        default = poll_job(client, submit(client, **body), until=is_terminal)
        # A threshold far above every cut of the sample: one scene, one frame.
        strict = submit(client, **body, scene_threshold=250, min_scene_seconds=1.0)
        job = poll_job(client, strict, until=is_terminal)
        assert (job["scene_threshold"], job["min_scene_seconds"]) == (250, 1.0)
        assert (default["scene_threshold"], default["min_scene_seconds"]) == (None, None)
        assert len(job["results"]["frames"]) < len(default["results"]["frames"])

    def test_missing_media_url_is_422(self, client: httpx.Client) -> None:
        error = assert_error(client.post("/v2/media/categories", json={}), 422, "VALIDATION_ERROR")
        assert error["details"]["errors"][0]["field"] == "media_url"

    def test_malformed_json_is_400(self, client: httpx.Client) -> None:
        response = client.post(
            "/v2/media/categories",
            content=b'{"media_url": ',
            headers={"Content-Type": "application/json"},
        )
        assert_error(response, 400, "MALFORMED_JSON")

    def test_body_not_an_object_is_422(self, client: httpx.Client) -> None:
        assert_error(client.post("/v2/media/categories", json=["x"]), 422, "VALIDATION_ERROR")

    @pytest.mark.parametrize(
        "url",
        [
            "ftp://example.com/v.mp4",
            "file:///etc/passwd",
            "gopher://127.0.0.1/",
            "example.com/video.mp4",
        ],
    )
    def test_bad_scheme_is_422(self, client: httpx.Client, url: str) -> None:
        error = assert_error(
            client.post("/v2/media/categories", json={"media_url": url}),
            422,
            "UNSUPPORTED_URL_SCHEME",
        )
        assert "http" in error["message"]

    def test_unreachable_media_is_422(self, client: httpx.Client, media_server: str) -> None:
        response = client.post(
            "/v2/media/categories", json={"media_url": f"{media_server}/missing.mp4"}
        )
        error = assert_error(response, 422, "MEDIA_UNREACHABLE")
        assert error["details"]["status_code"] == 404

    def test_redirect_to_media_is_followed(self, client: httpx.Client, media_server: str) -> None:
        response = client.post(
            "/v2/media/categories", json={"media_url": f"{media_server}/redirect/sample.mp4"}
        )
        assert response.status_code == 202, response.text

    @pytest.mark.parametrize("name", ["page.html", "random.mp4"])
    def test_not_a_video_is_415(self, client: httpx.Client, media_server: str, name: str) -> None:
        response = client.post("/v2/media/categories", json={"media_url": f"{media_server}/{name}"})
        assert_error(response, 415, "UNSUPPORTED_MEDIA")

    def test_undecodable_data_uri_is_422(self, client: httpx.Client) -> None:
        response = client.post(
            "/v2/media/categories", json={"media_url": "data:video/mp4;base64,@@@not-base64@@@"}
        )
        assert_error(response, 422, "INVALID_MEDIA_URL")

    def test_oversized_body_is_413(self, client: httpx.Client) -> None:
        payload = "A" * (3 * 1024 * 1024)
        response = client.post(
            "/v2/media/categories", json={"media_url": f"data:video/mp4;base64,{payload}"}
        )
        error = assert_error(response, 413, "REQUEST_TOO_LARGE")
        assert error["details"]["limit"] == 2 * 1024 * 1024

    def test_oversized_chunked_body_is_413(self, client: httpx.Client) -> None:
        chunks = (b"A" * 65536 for _ in range(64))  # 4 MiB without a Content-Length
        response = client.post(
            "/v2/media/categories", content=chunks, headers={"Content-Type": "application/json"}
        )
        assert_error(response, 413, "REQUEST_TOO_LARGE")

    def test_webhook_url_with_bad_scheme_is_422(
        self, client: httpx.Client, media_server: str
    ) -> None:
        response = client.post(
            "/v2/media/categories",
            json={
                "media_url": f"{media_server}/sample.mp4",
                "webhook_url": "ftp://hooks.example/x",
            },
        )
        assert_error(response, 422, "UNSUPPORTED_URL_SCHEME")


class TestIdempotency:
    def test_same_key_and_body_returns_the_same_job(
        self, client: httpx.Client, media_server: str
    ) -> None:
        body = {"media_url": f"{media_server}/sample.mp4", "job_tag": "idem"}
        headers = {"Idempotency-Key": "order-1"}
        first = client.post("/v2/media/categories", json=body, headers=headers)
        second = client.post("/v2/media/categories", json=body, headers=headers)
        assert first.status_code == 202 and second.status_code == 200
        assert first.json()["job_id"] == second.json()["job_id"]

    def test_same_key_with_another_body_is_409(
        self, client: httpx.Client, media_server: str
    ) -> None:
        headers = {"Idempotency-Key": "order-2"}
        client.post(
            "/v2/media/categories",
            json={"media_url": f"{media_server}/sample.mp4"},
            headers=headers,
        )
        response = client.post(
            "/v2/media/categories",
            headers=headers,
            json={"media_url": f"{media_server}/sample.mp4", "max_frames": 5},
        )
        assert_error(response, 409, "IDEMPOTENCY_KEY_REUSED")

    def test_another_api_key_gets_its_own_job(
        self, client: httpx.Client, other_client: httpx.Client, media_server: str
    ) -> None:
        body = {"media_url": f"{media_server}/sample.mp4"}
        headers = {"Idempotency-Key": "shared-value"}
        mine = client.post("/v2/media/categories", json=body, headers=headers)
        theirs = other_client.post("/v2/media/categories", json=body, headers=headers)
        assert mine.status_code == theirs.status_code == 202
        assert mine.json()["job_id"] != theirs.json()["job_id"]


class TestGet:
    def test_unknown_job_is_404(self, client: httpx.Client) -> None:
        assert_error(client.get(f"/v2/media/categories/{uuid.uuid4()}"), 404, "JOB_NOT_FOUND")

    def test_non_uuid_job_id_is_404(self, client: httpx.Client) -> None:
        assert_error(client.get("/v2/media/categories/not-a-uuid"), 404, "JOB_NOT_FOUND")

    def test_other_keys_job_is_not_found(
        self, client: httpx.Client, other_client: httpx.Client, media_server: str
    ) -> None:
        job_id = client.post(
            "/v2/media/categories", json={"media_url": f"{media_server}/sample.mp4"}
        ).json()["job_id"]
        assert_error(other_client.get(f"/v2/media/categories/{job_id}"), 404, "JOB_NOT_FOUND")
        assert_error(other_client.delete(f"/v2/media/categories/{job_id}"), 404, "JOB_NOT_FOUND")

    def test_status_echoes_the_request(self, client: httpx.Client, media_server: str) -> None:
        job_id = client.post(
            "/v2/media/categories",
            json={
                "media_url": f"{media_server}/sample.mp4",
                "metadata": ["tags", "scene"],
                "job_tag": "ref-7",
                "max_frames": 4,
                "use_scenes": True,
            },
        ).json()["job_id"]
        job = client.get(f"/v2/media/categories/{job_id}").json()
        assert job["job_tag"] == "ref-7"
        assert job["metadata"] == ["scene", "tags"]
        assert job["use_scenes"] is True and job["max_frames"] == 4
        assert job["results"] is None or job["status"] == "COMPLETED"


class TestList:
    def test_lists_only_own_jobs_newest_first_in_pages(
        self, client: httpx.Client, other_client: httpx.Client, media_server: str
    ) -> None:
        body = {"media_url": f"{media_server}/sample.mp4", "max_frames": 1}
        mine = [client.post("/v2/media/categories", json=body).json()["job_id"] for _ in range(3)]
        other_client.post("/v2/media/categories", json=body)
        first = client.get("/v2/media/categories", params={"limit": 2}).json()
        second = client.get(
            "/v2/media/categories", params={"limit": 2, "cursor": first["next_cursor"]}
        ).json()
        listed = [job["job_id"] for job in first["data"] + second["data"]]
        assert listed == list(reversed(mine))
        assert second["next_cursor"] is None
        assert all(job["results"] is None for job in first["data"])

    def test_status_filter(self, client: httpx.Client, media_server: str, fake_vlm: Any) -> None:
        fake_vlm.delay = 1.0  # the job cannot finish before it is cancelled
        job_id = client.post(
            "/v2/media/categories", json={"media_url": f"{media_server}/sample.mp4"}
        ).json()["job_id"]
        assert client.delete(f"/v2/media/categories/{job_id}").status_code == 200
        cancelled = client.get("/v2/media/categories", params={"status": "CANCELLED"}).json()
        completed = client.get("/v2/media/categories", params={"status": "COMPLETED"}).json()
        assert [job["job_id"] for job in cancelled["data"]] == [job_id]
        assert completed["data"] == []

    @pytest.mark.parametrize(
        "params",
        [{"limit": 0}, {"limit": 101}, {"status": "DONE"}, {"cursor": "garbage!"}],
        ids=["limit-0", "limit-101", "unknown-status", "bad-cursor"],
    )
    def test_bad_query_is_422(self, client: httpx.Client, params: dict[str, Any]) -> None:
        assert_error(client.get("/v2/media/categories", params=params), 422, "VALIDATION_ERROR")


class TestCancel:
    def test_cancelling_twice_is_409(
        self, client: httpx.Client, media_server: str, fake_vlm: Any
    ) -> None:
        fake_vlm.delay = 1.0  # the job cannot finish before it is cancelled
        job_id = client.post(
            "/v2/media/categories", json={"media_url": f"{media_server}/sample.mp4"}
        ).json()["job_id"]
        first = client.delete(f"/v2/media/categories/{job_id}")
        assert first.status_code == 200 and first.json()["status"] == "CANCELLED"
        assert_error(client.delete(f"/v2/media/categories/{job_id}"), 409, "JOB_ALREADY_FINISHED")
        job = poll_job(client, job_id, until=is_terminal)
        assert job["status"] == "CANCELLED", "a worker must never overwrite a cancellation"


class TestRoutes:
    def test_unknown_route_is_404_in_the_error_shape(self, api_url: str) -> None:
        assert_error(httpx.get(f"{api_url}/v3/nothing"), 404, "NOT_FOUND")

    def test_wrong_method_is_405_in_the_error_shape(self, client: httpx.Client) -> None:
        assert_error(client.put("/v2/media/categories"), 405, "METHOD_NOT_ALLOWED")

    def test_openapi_documents_the_endpoints_and_errors(self, api_url: str) -> None:
        spec = httpx.get(f"{api_url}/openapi.json").json()
        post = spec["paths"]["/v2/media/categories"]["post"]
        assert {"202", "401", "409", "413", "415", "422"} <= set(post["responses"])
        assert httpx.get(f"{api_url}/docs").status_code == 200
