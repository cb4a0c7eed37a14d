"""Search over the caller's completed jobs (docs/api.md, "Search")."""

from __future__ import annotations

import base64
import binascii
import json
import math
import uuid

from sqlalchemy.orm import Session

from api.deps import Caller
from db import search
from scenecap.core.errors import ValidationFailed
from scenecap.schemas.search import SearchHit, SearchPage


def search_page(
    session: Session,
    key: Caller,
    query: str,
    *,
    limit: int,
    cursor: str | None,
    job_id: str | None,
) -> SearchPage:
    if not query.strip():
        raise ValidationFailed("q: say what to search for", {"field": "q"})
    if not search.fts5_query(query):  # only exclusions: every passage of the key would match
        raise ValidationFailed(
            "q: name at least one word to find, not only words to exclude", {"field": "q"}
        )
    job = _job_id(job_id) if job_id else None
    after = _decode(cursor) if cursor else None
    hits = search.search(session, key.id, query, limit=limit + 1, after=after, job_id=job)
    more = len(hits) > limit
    hits = hits[:limit]
    next_cursor = _encode(hits[-1].score, hits[-1].id) if more else None
    return SearchPage(
        data=[
            SearchHit(
                job_id=h.job_id,
                job_tag=h.job_tag,
                media_url=h.media_url,
                media_name=h.media_name,
                kind=h.kind,
                start=h.start,
                end=h.end,
                text=h.text,
                highlight=h.highlight,
                score=round(h.score, 6),
            )
            for h in hits
        ],
        next_cursor=next_cursor,
    )


def _job_id(raw: str) -> uuid.UUID:
    try:
        return uuid.UUID(raw)
    except ValueError:
        raise ValidationFailed("job_id: not a job id", {"field": "job_id"}) from None


def _encode(score: float, passage: int) -> str:
    raw = json.dumps([score, passage]).encode()  # repr of a float: exact, so pages never overlap
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _decode(cursor: str) -> tuple[float, int]:
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        score, passage = json.loads(raw)
        score, passage = float(score), int(passage)
        if not math.isfinite(score) or not 0 <= passage < 2**63:
            raise ValueError("out of range")
        return score, passage
    except (binascii.Error, ValueError, TypeError):
        raise ValidationFailed(
            "cursor: not a cursor this API returned", {"field": "cursor"}
        ) from None
