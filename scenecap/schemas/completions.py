"""The OpenAI chat-completions request and response of POST /v2/media/completions."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field


class ImageUrl(BaseModel):
    url: str = Field(min_length=1, description="http(s) URL or data:<mime>;base64,<...>")
    detail: str | None = None


class TextPart(BaseModel):
    type: Literal["text"]
    text: str


class ImagePart(BaseModel):
    type: Literal["image_url"]
    image_url: ImageUrl


ContentPart = Annotated[TextPart | ImagePart, Field(discriminator="type")]


class ChatMessage(BaseModel):
    role: Literal["system", "user", "assistant"]
    content: str | list[ContentPart]


class CompletionRequest(BaseModel):
    """POST /v2/media/completions: the OpenAI chat-completions request (no streaming)."""

    # The OpenAI SDK may send fields this service does not use; they are ignored.
    model_config = ConfigDict(extra="ignore")

    model: str | None = Field(None, max_length=200)
    messages: list[ChatMessage] = Field(min_length=1, max_length=100)
    temperature: float = Field(0.1, ge=0, le=2)
    max_tokens: int | None = Field(None, ge=1, le=16384)
    stream: Literal[False] = False

    def image_urls(self) -> list[str]:
        return [
            part.image_url.url
            for message in self.messages
            if not isinstance(message.content, str)
            for part in message.content
            if isinstance(part, ImagePart)
        ]


class AssistantMessage(BaseModel):
    role: Literal["assistant"] = "assistant"
    content: str


class Choice(BaseModel):
    index: int
    message: AssistantMessage
    finish_reason: str


class CompletionUsage(BaseModel):
    prompt_tokens: int
    completion_tokens: int
    total_tokens: int


class CompletionResponse(BaseModel):
    id: str
    object: Literal["chat.completion"] = "chat.completion"
    created: int
    model: str
    choices: list[Choice]
    usage: CompletionUsage
