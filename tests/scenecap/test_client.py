"""The Python client against a real running API (sync and async), and webhook verification."""

from __future__ import annotations

import asyncio
import base64
import inspect
import subprocess
import sys
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from typing import Any

import pytest
from standardwebhooks import Webhook

from db.keys import new_webhook_secret
from scenecap.client import (
    AsyncScenecapClient,
    ScenecapClient,
    WaitTimeout,
    WebhookVerificationError,
    verify_webhook,
)
from scenecap.core import errors
from scenecap.schemas import ImageResult, JobAccepted, JobOut
from tests.conftest import cancel_unfinished, client_for

pytestmark = pytest.mark.usefixtures("worker")


@pytest.fixture
def key(new_key: Callable[[], str]) -> str:
    return new_key()


@pytest.fixture
def sdk(api_url: str, key: str) -> Iterator[ScenecapClient]:
    with ScenecapClient(api_url, key) as client:
        yield client
    with client_for(api_url, key) as http:
        cancel_unfinished(http)


def test_create_wait_get_list(sdk: ScenecapClient, media_server: str, fake_vlm: Any) -> None:
    accepted = sdk.create(f"{media_server}/sample.mp4", max_frames=3, job_tag="client-test")
    assert isinstance(accepted, JobAccepted)
    seen: list[JobOut] = []
    job = sdk.wait(accepted.job_id, timeout=120, on_progress=seen.append)
    assert job.status == "COMPLETED" and job.job_tag == "client-test"
    assert job.results is not None and len(job.results["frames"]) == 3
    percents = [j.percent_complete for j in seen]
    assert percents == sorted(percents) and percents[-1] == 100
    assert sdk.get(accepted.job_id) == job
    assert accepted.job_id in [j.job_id for j in sdk.list(status="COMPLETED").data]


def test_events_follow_a_job_to_its_end(
    sdk: ScenecapClient, media_server: str, fake_vlm: Any
) -> None:
    fake_vlm.delay = 0.2
    accepted = sdk.create(f"{media_server}/sample.mp4", max_frames=3)
    assert isinstance(accepted, JobAccepted)
    events = list(sdk.events(accepted.job_id))
    assert [e.event for e in events[:-1]] == ["progress"] * (len(events) - 1)
    assert events[-1].event == "completed" and events[-1].terminal
    assert events[-1].data["results"]["frames"]


def test_cancel_and_wait_timeout(sdk: ScenecapClient, media_server: str, fake_vlm: Any) -> None:
    fake_vlm.delay = 2.0
    accepted = sdk.create(f"{media_server}/sample.mp4", max_frames=4)
    assert isinstance(accepted, JobAccepted)
    with pytest.raises(WaitTimeout):
        sdk.wait(accepted.job_id, timeout=0.5)
    assert sdk.cancel(accepted.job_id).status == "CANCELLED"
    assert sdk.wait(accepted.job_id, timeout=30).status == "CANCELLED"


def test_an_image_is_answered_inline(sdk: ScenecapClient, media_server: str, fake_vlm: Any) -> None:
    result = sdk.create(f"{media_server}/purple.png")
    assert isinstance(result, ImageResult)
    assert result.caption and result.metadata["tags"]


def test_errors_are_raised_as_the_scenecap_error_their_code_names(
    api_url: str, sdk: ScenecapClient
) -> None:
    with pytest.raises(errors.JobNotFound) as missing:
        sdk.get("00000000-0000-0000-0000-000000000000")
    assert missing.value.status == 404  # type: ignore[attr-defined]
    with pytest.raises(errors.UnsupportedUrlScheme):
        sdk.create("file:///etc/passwd")
    with ScenecapClient(api_url, "sc_not-a-key") as stranger, pytest.raises(errors.Unauthenticated):
        stranger.list()


def test_complete_answers_in_the_chat_completions_shape(
    sdk: ScenecapClient, media_dir: Any, fake_vlm: Any
) -> None:
    data = base64.b64encode((media_dir / "purple.png").read_bytes()).decode()
    answer = sdk.complete(
        [
            {
                "role": "user",
                "content": [
                    {"type": "text", "text": "What colour is this?"},
                    {"type": "image_url", "image_url": {"url": f"data:image/png;base64,{data}"}},
                ],
            }
        ],
        max_tokens=50,
    )
    assert answer.object == "chat.completion"
    assert "purple" in (answer.choices[0].message.content or "").lower()


def test_async_client_does_the_same(
    api_url: str, key: str, media_server: str, fake_vlm: Any
) -> None:
    async def scenario() -> tuple[JobOut, list[str], JobOut]:
        async with AsyncScenecapClient(api_url, key) as client:
            first = await client.create(f"{media_server}/sample.mp4", max_frames=2)
            second = await client.create(f"{media_server}/sample.mp4", max_frames=2, job_tag="b")
            assert isinstance(first, JobAccepted) and isinstance(second, JobAccepted)
            done, _other = await asyncio.gather(
                client.wait(first.job_id, timeout=120), client.wait(second.job_id, timeout=120)
            )
            names = [event.event async for event in client.events(second.job_id)]
            listed = await client.list(limit=5)
            assert {first.job_id, second.job_id} <= {j.job_id for j in listed.data}
            with pytest.raises(errors.JobNotFound):
                await client.cancel("00000000-0000-0000-0000-000000000000")
            return done, names, await client.get(second.job_id)

    done, names, second = asyncio.run(scenario())
    assert done.status == "COMPLETED" and second.status == "COMPLETED"
    assert names[-1] == "completed"


def test_search_and_ask_from_both_clients(
    sdk: ScenecapClient, api_url: str, key: str, media_server: str, fake_vlm: Any
) -> None:
    accepted = sdk.create(f"{media_server}/sample.mp4", max_frames=3, metadata=["tags"])
    assert isinstance(accepted, JobAccepted)
    job = sdk.wait(accepted.job_id, timeout=120)
    assert job.status == "COMPLETED" and job.results is not None
    times = {frame["timestamp"] for frame in job.results["frames"]}
    first = sdk.search("background", limit=2)
    assert len(first.data) == 2 and first.next_cursor is not None
    rest = sdk.search("background", limit=2, cursor=first.next_cursor, job_id=accepted.job_id)
    found = first.data + rest.data
    assert {h.start for h in found if h.kind == "frame"} == times
    answer = sdk.ask(accepted.job_id, "Which background is it?", max_tokens=100)
    assert answer.citations and {c.start for c in answer.citations} <= times
    with pytest.raises(errors.ValidationFailed):
        sdk.search("  ")

    async def from_async() -> tuple[int, int]:
        async with AsyncScenecapClient(api_url, key) as client:
            page = await client.search("background", job_id=accepted.job_id)
            asked = await client.ask(accepted.job_id, "Which background is it?")
            return len(page.data), len(asked.citations)

    assert asyncio.run(from_async()) == (len(found), len(answer.citations))


def test_batches_and_usage_from_both_clients(
    sdk: ScenecapClient, api_url: str, key: str, media_server: str, fake_vlm: Any
) -> None:
    requests: list[dict[str, Any]] = [
        {"media_url": f"{media_server}/sample.mp4", "max_frames": 1},
        {"max_frames": 1},
    ]
    batch = sdk.create_batch(requests, idempotency_key="client-batch")
    assert [r.status for r in batch.results] == [202, 422]
    assert batch.results[1].error is not None and batch.results[1].error.code == "VALIDATION_ERROR"
    job_id = batch.results[0].job_id
    assert job_id is not None and sdk.wait(job_id, timeout=120).status == "COMPLETED"
    today = datetime.now(UTC).date().isoformat()
    report = sdk.usage(first=today, last=today)
    assert report.jobs == {"COMPLETED": 1} and report.frames == 1

    async def from_async() -> tuple[list[int], int]:
        async with AsyncScenecapClient(api_url, key) as client:
            again = await client.create_batch(requests, idempotency_key="client-batch")
            return [r.status for r in again.results], (await client.usage()).frames

    assert asyncio.run(from_async()) == ([200, 422], 1)


def test_verify_webhook_accepts_what_the_reference_library_signs() -> None:
    secret = new_webhook_secret()
    body = '{"type":"media.completed","data":{"job_id":"x"}}'
    stamp = datetime.now(UTC)
    signature = Webhook(secret).sign("msg_1", stamp, body)
    headers = {
        "Webhook-Id": "msg_1",
        "Webhook-Timestamp": str(int(stamp.timestamp())),
        "Webhook-Signature": f"v1,bm90IHRoaXMgb25l {signature}",  # rotation: two signatures
    }
    assert verify_webhook(headers, body.encode(), secret)["type"] == "media.completed"

    with pytest.raises(WebhookVerificationError):
        verify_webhook(headers, body.replace("completed", "failed"), secret)
    with pytest.raises(WebhookVerificationError):
        verify_webhook(headers, body, new_webhook_secret())
    with pytest.raises(WebhookVerificationError, match="timestamp"):
        verify_webhook(headers, body, secret, now=stamp.timestamp() + 3600)
    with pytest.raises(WebhookVerificationError):
        verify_webhook({"webhook-id": "msg_1"}, body, secret)


def test_both_clients_offer_the_same_methods_with_the_same_parameters() -> None:
    def methods(cls: type) -> dict[str, inspect.Signature]:
        return {
            name: inspect.signature(member)
            for name, member in inspect.getmembers(cls, inspect.isfunction)
            if not name.startswith("_") and name not in ("close", "aclose")
        }

    sync, asynchronous = methods(ScenecapClient), methods(AsyncScenecapClient)
    assert sync.keys() == asynchronous.keys()
    for name, signature in sync.items():
        assert list(signature.parameters) == list(asynchronous[name].parameters), name


def test_client_users_can_catch_the_precise_error(sdk: ScenecapClient) -> None:
    with pytest.raises(errors.InvalidMediaUrl):
        sdk.create("data:video/mp4;base64,@@not base64@@")


def test_the_client_imports_without_the_server_stack() -> None:
    code = (
        "import sys, scenecap.client; "
        "print([m for m in ('sqlalchemy', 'celery', 'cv2', 'av', 'fastapi', 'pydantic_settings')"
        " if m in sys.modules])"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "[]"
