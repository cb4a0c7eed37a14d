"""Overload protection: per-key request rate (shared through Redis) and active-job cap."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from typing import Any

import httpx
import pytest

from api.main import create_app
from scenecap.core.settings import Settings
from tests.api.test_categories import assert_error
from tests.conftest import serve_app

pytestmark = pytest.mark.usefixtures("worker")


@pytest.fixture
def api_with(settings: Settings) -> Iterator[Callable[..., str]]:
    """Two API processes' worth: more instances of the API with other settings (same stores)."""
    with ExitStack() as stack:

        def make(**overrides: Any) -> str:
            app = create_app(settings.model_copy(update=overrides))
            return stack.enter_context(serve_app(app))

        yield make


def get(url: str, key: str) -> httpx.Response:
    return httpx.get(f"{url}/v2/media/categories", headers={"Authorization": f"Bearer {key}"})


def test_rate_limit_is_per_key_and_shared_across_api_processes(
    api_with: Callable[..., str], new_key: Callable[[], str]
) -> None:
    first, second = api_with(rate_limit_per_minute=5), api_with(rate_limit_per_minute=5)
    busy, quiet = new_key(), new_key()
    started = time.time()
    answers: list[httpx.Response] = []
    while not answers or answers[-1].status_code != 429:
        assert len(answers) < 12, "no 429 after twice the limit"
        answers.append(get(first if len(answers) % 2 else second, busy))
    error = assert_error(answers[-1], 429, "RATE_LIMITED")
    assert 1 <= int(answers[-1].headers["retry-after"]) <= 61
    assert error["details"]["limit"] == 5
    if int(started // 60) == int(time.time() // 60):
        # One window: the two API processes shared one count (apart they would allow 10).
        assert len(answers) - 1 == 5
    assert get(second, quiet).status_code == 200, "another key is not slowed by a busy one"


def test_active_job_cap_is_per_key(
    api_with: Callable[..., str], new_key: Callable[[], str], media_server: str, fake_vlm: Any
) -> None:
    fake_vlm.delay = 1.0  # keep the first jobs active
    url = api_with(max_active_jobs_per_key=2)
    busy, quiet = new_key(), new_key()
    body = {"media_url": f"{media_server}/sample.mp4", "max_frames": 8}
    headers = {"Authorization": f"Bearer {busy}"}
    started = [
        httpx.post(f"{url}/v2/media/categories", json=body, headers=headers, timeout=30)
        for _ in range(2)
    ]
    assert [r.status_code for r in started] == [202, 202]
    third = httpx.post(f"{url}/v2/media/categories", json=body, headers=headers, timeout=30)
    assert_error(third, 429, "TOO_MANY_ACTIVE_JOBS")
    assert third.headers["retry-after"] == "10"
    other = httpx.post(
        f"{url}/v2/media/categories",
        json=body,
        headers={"Authorization": f"Bearer {quiet}"},
        timeout=30,
    )
    assert other.status_code == 202
    for response, key in zip((*started, other), (busy, busy, quiet), strict=True):
        httpx.delete(
            f"{url}/v2/media/categories/{response.json()['job_id']}",
            headers={"Authorization": f"Bearer {key}"},
        )


def test_a_larger_limit_counted_in_batches_still_holds_exactly(
    api_with: Callable[..., str], new_key: Callable[[], str]
) -> None:
    # Far from its limit a process counts locally and adds to Redis in batches; the last
    # tenth is counted request by request, so the limit itself is exact.
    url, key = api_with(rate_limit_per_minute=100), new_key()
    started = time.time()
    codes = [get(url, key).status_code for _ in range(101)]
    if int(started // 60) == int(time.time() // 60):  # all in one window
        assert codes == [200] * 100 + [429]
