"""/v2/media/completions: the OpenAI chat-completions shape over images and videos."""

from __future__ import annotations

import asyncio
import base64
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest
import redis
from sqlalchemy import func, select

from api.main import create_app
from db.keys import find_active_key, hash_key
from db.models import Job
from scenecap.core.enums import JobStatus
from scenecap.core.settings import Settings
from tests.api.test_categories import assert_error
from tests.conftest import serve_app

pytestmark = pytest.mark.usefixtures("worker")


def chat(image_url: str, question: str = "What colour is this?") -> dict[str, Any]:
    return {
        "model": "fake-vlm",
        "messages": [
            {"role": "system", "content": "Answer briefly."},
            {
                "role": "user",
                "content": [
                    {"type": "text", "text": question},
                    {"type": "image_url", "image_url": {"url": image_url}},
                ],
            },
        ],
        "max_tokens": 100,
    }


def assert_completion(body: dict[str, Any]) -> str:
    assert body["object"] == "chat.completion"
    assert body["id"].startswith("chatcmpl-") and isinstance(body["created"], int)
    assert body["model"] == "fake-vlm"
    [choice] = body["choices"]
    assert choice["index"] == 0 and choice["finish_reason"] == "stop"
    assert choice["message"]["role"] == "assistant"
    usage = body["usage"]
    assert usage["total_tokens"] == usage["prompt_tokens"] + usage["completion_tokens"] > 0
    return str(choice["message"]["content"])


class TestAnswers:
    def test_image_url_is_fetched_and_sent_inline(
        self, client: httpx.Client, media_server: str, fake_vlm: Any
    ) -> None:
        response = client.post("/v2/media/completions", json=chat(f"{media_server}/purple.jpg"))
        assert response.status_code == 200, response.text
        assert "purple" in assert_completion(response.json())
        [sent] = fake_vlm.image_requests()
        parts = sent.body["messages"][1]["content"]
        assert parts[0] == {"type": "text", "text": "What colour is this?"}
        assert parts[1]["image_url"]["url"].startswith("data:image/jpeg;base64,")
        assert sent.body["max_tokens"] == 100 and sent.body["temperature"] == 0.1

    def test_base64_image_is_accepted(
        self, client: httpx.Client, media_dir: Path, fake_vlm: Any
    ) -> None:
        data = base64.b64encode((media_dir / "purple.png").read_bytes()).decode()
        response = client.post("/v2/media/completions", json=chat(f"data:image/png;base64,{data}"))
        assert response.status_code == 200, response.text
        assert "purple" in assert_completion(response.json())

    def test_video_is_sampled_into_frames_within_the_budget(
        self, client: httpx.Client, media_server: str, fake_vlm: Any, settings: Any
    ) -> None:
        response = client.post("/v2/media/completions", json=chat(f"{media_server}/sample.mp4"))
        assert response.status_code == 200, response.text
        assert_completion(response.json())
        [sent] = fake_vlm.image_requests()
        parts = sent.body["messages"][1]["content"]
        images = [p for p in parts if p["type"] == "image_url"]
        assert len(images) == settings.completion_video_frames
        assert any("Frames of a 12.0 s video" in p.get("text", "") for p in parts)

    def test_chat_completions_alias_serves_the_same(
        self, client: httpx.Client, media_server: str, fake_vlm: Any
    ) -> None:
        response = client.post(
            "/v2/media/chat/completions", json=chat(f"{media_server}/purple.jpg")
        )
        assert response.status_code == 200
        assert "purple" in assert_completion(response.json())

    def test_completion_jobs_do_not_appear_among_media_jobs(
        self, client: httpx.Client, media_server: str, fake_vlm: Any
    ) -> None:
        client.post("/v2/media/completions", json=chat(f"{media_server}/purple.jpg"))
        assert client.get("/v2/media/categories").json()["data"] == []


class TestOpenAISdk:
    def test_official_client_gets_a_parsed_completion(
        self, api_url: str, new_key: Any, media_server: str, media_dir: Path, fake_vlm: Any
    ) -> None:
        sdk = openai.OpenAI(base_url=f"{api_url}/v2/media", api_key=new_key(), max_retries=0)
        data = base64.b64encode((media_dir / "purple.jpg").read_bytes()).decode()
        for url in (f"{media_server}/purple.jpg", f"data:image/jpeg;base64,{data}"):
            completion = sdk.chat.completions.create(
                model="fake-vlm",
                messages=[
                    {
                        "role": "user",
                        "content": [
                            {"type": "text", "text": "Describe it."},
                            {"type": "image_url", "image_url": {"url": url}},
                        ],
                    }
                ],
                max_tokens=50,
            )
            assert completion.object == "chat.completion"
            assert "purple" in (completion.choices[0].message.content or "")
            assert completion.usage is not None and completion.usage.total_tokens > 0

    def test_sdk_sees_errors_as_api_errors(self, api_url: str, new_key: Any) -> None:
        sdk = openai.OpenAI(base_url=f"{api_url}/v2/media", api_key=new_key(), max_retries=0)
        with pytest.raises(openai.UnprocessableEntityError):
            sdk.chat.completions.create(
                model="m",
                messages=[
                    {
                        "role": "user",
                        "content": [
                            {"type": "image_url", "image_url": {"url": "ftp://example.com/x.jpg"}}
                        ],
                    }
                ],
            )


class TestBadInput:
    def test_unknown_part_type_is_422(self, client: httpx.Client, media_server: str) -> None:
        body = chat(f"{media_server}/purple.jpg")
        body["messages"][1]["content"].append({"type": "input_audio", "input_audio": {}})
        assert_error(client.post("/v2/media/completions", json=body), 422, "VALIDATION_ERROR")

    def test_undecodable_base64_is_422(self, client: httpx.Client) -> None:
        response = client.post("/v2/media/completions", json=chat("data:image/png;base64,%%%"))
        assert_error(response, 422, "INVALID_MEDIA_URL")

    def test_not_an_image_is_415(self, client: httpx.Client, media_server: str) -> None:
        response = client.post("/v2/media/completions", json=chat(f"{media_server}/page.html"))
        assert_error(response, 415, "UNSUPPORTED_MEDIA")

    def test_unreachable_image_is_422(self, client: httpx.Client, media_server: str) -> None:
        response = client.post("/v2/media/completions", json=chat(f"{media_server}/gone.jpg"))
        assert_error(response, 422, "MEDIA_UNREACHABLE")

    @pytest.mark.parametrize(
        "body",
        [
            {},
            {"messages": []},
            {"messages": [{"role": "robot", "content": "hi"}]},
            {"messages": [{"role": "user", "content": "no image"}]},
        ],
        ids=["empty", "no-messages", "bad-role", "no-image"],
    )
    def test_malformed_chat_is_422(self, client: httpx.Client, body: dict[str, Any]) -> None:
        assert_error(client.post("/v2/media/completions", json=body), 422, "VALIDATION_ERROR")

    def test_streaming_is_refused(self, client: httpx.Client, media_server: str) -> None:
        body = {**chat(f"{media_server}/purple.jpg"), "stream": True}
        assert_error(client.post("/v2/media/completions", json=body), 422, "VALIDATION_ERROR")

    def test_needs_a_key(self, api_url: str, media_server: str) -> None:
        response = httpx.post(
            f"{api_url}/v2/media/completions", json=chat(f"{media_server}/purple.jpg")
        )
        assert_error(response, 401, "UNAUTHENTICATED")

    def test_model_failure_is_reported_with_its_code(
        self, client: httpx.Client, media_server: str, fake_vlm: Any
    ) -> None:
        fake_vlm.fail_next, fake_vlm.fail_status = 1000, 503
        response = client.post("/v2/media/completions", json=chat(f"{media_server}/purple.jpg"))
        assert_error(response, 503, "VISION_BACKEND_UNAVAILABLE")


class TestWaiting:
    def test_waiting_completions_hold_no_thread_and_end_cancelled(
        self,
        settings: Settings,
        session_factory: Any,
        new_key: Callable[[], str],
        media_dir: Path,
    ) -> None:
        # Their worker never answers (no worker reads this broker): each request waits out
        # COMPLETION_WAIT_SECONDS. Waiting must not take a thread: 60 waits are more than the
        # 40 threads the API has, and /healthz and other requests must still be answered.
        silent = "redis://127.0.0.1:6379/12"
        redis.Redis.from_url(silent).flushdb()
        app = create_app(
            settings.model_copy(update={"broker_url": silent, "completion_wait_seconds": 20})
        )
        key = new_key()
        image = base64.b64encode((media_dir / "purple.jpg").read_bytes()).decode()
        body = chat(f"data:image/jpeg;base64,{image}")
        headers = {"Authorization": f"Bearer {key}"}

        def waiting(session_factory: Any) -> int:
            with session_factory() as session:
                caller = find_active_key(session, hash_key(key))
                assert caller is not None
                pending = select(func.count()).where(
                    Job.api_key_id == caller.id, Job.status == JobStatus.PENDING
                )
                return int(session.scalar(pending) or 0)

        async def scenario(url: str) -> list[httpx.Response]:
            async with httpx.AsyncClient(base_url=url, headers=headers, timeout=60) as http:
                asked = [
                    asyncio.create_task(http.post("/v2/media/completions", json=body))
                    for _ in range(60)
                ]
                while await asyncio.to_thread(waiting, session_factory) < 60:
                    await asyncio.sleep(0.1)  # poll until all 60 wait; bounded by the test timeout
                assert (await http.get("/healthz")).status_code == 200
                assert (await http.get("/v2/media/categories")).status_code == 200
                assert not any(task.done() for task in asked), "a wait ended early"
                return list(await asyncio.gather(*asked))

        with serve_app(app) as url:
            answers = asyncio.run(scenario(url))
        for answer in answers:
            assert_error(answer, 504, "COMPLETION_TIMEOUT")
        assert waiting(session_factory) == 0, "timed-out completions stay cancelled"
