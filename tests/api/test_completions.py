"""/v2/media/completions: the OpenAI chat-completions shape over images and videos."""

from __future__ import annotations

import base64
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest

from tests.api.test_categories import assert_error

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
