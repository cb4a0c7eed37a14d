"""GET /v2/media/search and POST /v2/media/categories/{job_id}/ask (docs/api.md)."""

from __future__ import annotations

import uuid
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from scenecap.schemas import Text


class SearchHit(BaseModel):
    """A passage of one of your completed jobs that matches the query."""

    job_id: uuid.UUID
    job_tag: str | None
    media_url: str
    media_name: str | None
    kind: Literal["frame", "segment", "chapter", "transcript", "label"]
    start: float
    end: float
    text: str
    highlight: str = Field(description="the text around the matches, which are in <b>…</b>")
    score: float


class SearchPage(BaseModel):
    """Hits, best first; pass next_cursor back as `cursor` for the next page."""

    data: list[SearchHit]
    next_cursor: str | None


class AskRequest(BaseModel):
    """A question about one completed job."""

    model_config = ConfigDict(extra="forbid")

    question: Text = Field(min_length=1, max_length=2000)
    max_tokens: int = Field(300, ge=16, le=4096, description="the longest answer, in tokens")


class Citation(BaseModel):
    """A passage the answer rests on, with its time in the video."""

    start: float
    end: float
    kind: Literal["frame", "segment", "chapter", "transcript", "label"]
    text: str


class AskUsage(BaseModel):
    prompt_tokens: int = 0
    completion_tokens: int = 0
    total_tokens: int = 0
    passages: int = Field(description="how many passages the answer was drawn from")


class AskAnswer(BaseModel):
    answer: str
    citations: list[Citation]
    model: str = Field(description='the model that answered, or "local-extractive"')
    usage: AskUsage
