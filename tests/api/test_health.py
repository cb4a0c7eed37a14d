"""Health, readiness and behaviour while a dependency is down (docs/api.md, "Operations")."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import ExitStack
from pathlib import Path

import httpx
import pytest

from api.main import create_app
from scenecap.core.settings import Settings
from tests.conftest import serve_app

DEAD_DATABASE = "postgresql+psycopg://postgres@127.0.0.1:1/nothing"
DEAD_BROKER = "redis://127.0.0.1:1/0"


AppWith = Callable[..., httpx.Client]


@pytest.fixture
def app_with(settings: Settings) -> Iterator[AppWith]:
    """Serve another API instance whose settings differ from the test settings."""
    with ExitStack() as stack:

        def make(**overrides: object) -> httpx.Client:
            url = stack.enter_context(serve_app(create_app(settings.model_copy(update=overrides))))
            return stack.enter_context(httpx.Client(base_url=url, timeout=30))

        yield make


class TestReadiness:
    def test_ready_when_database_broker_and_store_answer(self, api_url: str) -> None:
        response = httpx.get(f"{api_url}/readyz")
        assert response.status_code == 200
        checks = {"database": "ok", "broker": "ok", "store": "ok"}
        assert response.json() == {"status": "ready", "checks": checks}

    def test_503_while_database_is_down(self, app_with: AppWith) -> None:
        response = app_with(database_url=DEAD_DATABASE).get("/readyz")
        assert response.status_code == 503
        error = response.json()["error"]
        assert error["code"] == "DATABASE_UNAVAILABLE"
        checks = {"database": "unavailable", "broker": "ok", "store": "ok"}
        assert error["details"]["checks"] == checks

    def test_503_while_broker_is_down(self, app_with: AppWith) -> None:
        response = app_with(broker_url=DEAD_BROKER).get("/readyz")
        assert response.status_code == 503
        assert response.json()["error"]["code"] == "BROKER_UNAVAILABLE"
        assert response.json()["error"]["details"]["checks"]["broker"] == "unavailable"

    def test_503_while_the_store_refuses(self, app_with: AppWith, tmp_path: Path) -> None:
        blocked = tmp_path / "not-a-folder"
        blocked.write_text("a file where the store's folder should be")
        response = app_with(media_store=f"file://{blocked}").get("/readyz")
        assert response.status_code == 503
        assert response.json()["error"]["code"] == "STORE_UNAVAILABLE"

    def test_more_than_one_down_is_service_unavailable(self, app_with: AppWith) -> None:
        response = app_with(database_url=DEAD_DATABASE, broker_url=DEAD_BROKER).get("/readyz")
        assert response.status_code == 503
        assert response.json()["error"]["code"] == "SERVICE_UNAVAILABLE"


class TestDependencyOutages:
    def test_requests_get_503_not_500_while_database_is_down(self, app_with: AppWith) -> None:
        response = app_with(database_url=DEAD_DATABASE).get(
            "/v2/media/categories",
            headers={"Authorization": "Bearer sc_" + "w" * 43},  # well formed: looked up
        )
        assert response.status_code == 503
        assert response.json()["error"]["code"] == "DATABASE_UNAVAILABLE"

    def test_submit_gets_503_while_broker_is_down_and_keeps_the_job(
        self, app_with: AppWith, new_key: Callable[[], str], media_server: str
    ) -> None:
        headers = {"Authorization": f"Bearer {new_key()}"}
        down = app_with(broker_url=DEAD_BROKER)
        response = down.post(
            "/v2/media/categories",
            headers=headers,
            json={"media_url": f"{media_server}/sample.mp4"},
        )
        assert response.status_code == 503
        assert response.json()["error"]["code"] == "BROKER_UNAVAILABLE"
        # The job row was committed before the enqueue failed: the reaper will queue it.
        listed = down.get("/v2/media/categories", headers=headers).json()["data"]
        assert [job["status"] for job in listed] == ["PENDING"]


class TestUrlPolicyAtSubmit:
    @pytest.mark.parametrize(
        "host",
        [
            "127.0.0.1",
            "localhost",
            "[::1]",
            "169.254.169.254",
            "10.0.0.1",
            "2130706433",
            "0x7f000001",
        ],
    )
    def test_private_media_url_is_refused_by_default(
        self, app_with: AppWith, new_key: Callable[[], str], host: str
    ) -> None:
        response = app_with(allow_private_urls=False).post(
            "/v2/media/categories",
            headers={"Authorization": f"Bearer {new_key()}"},
            json={"media_url": f"http://{host}:9/video.mp4"},
        )
        assert response.status_code == 422, response.text
        assert response.json()["error"]["code"] == "URL_NOT_ALLOWED"

    @pytest.mark.parametrize(
        "host",
        [
            "127.0.0.1",
            "localhost",
            "[::1]",
            "169.254.169.254",
            "100.100.100.200",
            "192.168.1.1",
            "[fc00::1]",
            "[::ffff:127.0.0.1]",
            "2130706433",
        ],
    )
    def test_private_webhook_url_is_refused_by_default(
        self, app_with: AppWith, new_key: Callable[[], str], media_server: str, host: str
    ) -> None:
        strict = app_with(allow_private_urls=False)
        headers = {"Authorization": f"Bearer {new_key()}"}
        response = strict.put("/v2/webhook", headers=headers, json={"url": f"http://{host}/hook"})
        assert response.status_code == 422, response.text
        assert response.json()["error"]["code"] == "URL_NOT_ALLOWED"

    def test_credentials_in_url_are_refused(
        self, app_with: AppWith, new_key: Callable[[], str]
    ) -> None:
        response = app_with(allow_private_urls=False).post(
            "/v2/media/categories",
            headers={"Authorization": f"Bearer {new_key()}"},
            json={"media_url": "http://public@127.0.0.1/video.mp4"},
        )
        assert response.json()["error"]["code"] == "URL_NOT_ALLOWED"
