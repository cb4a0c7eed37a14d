"""Full-text search over completed jobs (docs/api.md, "Search"): what is indexed, and the
queries. PostgreSQL: the generated `tsv` column, `websearch_to_tsquery`, `ts_rank_cd`,
`ts_headline`. SQLite (dev): FTS5's `bm25` and `snippet`, the query translated from the same
web-search syntax (quoted phrases, `or`, `-word`)."""

from __future__ import annotations

import re
import uuid
from dataclasses import dataclass
from typing import Any

from sqlalchemy import TextClause, Uuid, bindparam, insert, select, text
from sqlalchemy.orm import Session

from db.models import Job, Passage

# Where a highlight's matches start and end.
HIGHLIGHT = ("<b>", "</b>")


def passages_of(results: dict[str, Any]) -> list[dict[str, Any]]:
    """A completed job's searchable passages: frame and segment captions, chapters,
    transcript segments, and each label with the first and last time it is seen."""
    found: list[dict[str, Any]] = []

    def add(kind: str, start: float, end: float, words: str) -> None:
        if words and words.strip():
            found.append({"kind": kind, "start": start, "end": end, "text": words.strip()})

    for frame in results.get("frames") or []:
        add("frame", frame["timestamp"], frame["timestamp"], frame.get("caption", ""))
    for segment in results.get("segments") or []:
        add("segment", segment["start"], segment["end"], segment.get("caption", ""))
    for chapter in results.get("chapters") or []:
        add(
            "chapter", chapter["start"], chapter["end"], f"{chapter['title']}: {chapter['summary']}"
        )
    for spoken in (results.get("transcript") or {}).get("segments") or []:
        add("transcript", spoken["start"], spoken["end"], spoken["text"])
    for value in results.values():
        if isinstance(value, list) and value and isinstance(value[0], dict) and "count" in value[0]:
            for label in value:
                times = label.get("timestamps") or [0.0]
                add("label", times[0], times[-1], str(label.get("name", "")))
    return found


def index_job(session: Session, job_id: uuid.UUID, results: dict[str, Any]) -> int:
    """Index a job's results (in the transaction that completes it); how many passages."""
    found = passages_of(results)
    if found:
        key_id = session.scalar(select(Job.api_key_id).where(Job.id == job_id))
        session.execute(
            insert(Passage), [{"job_id": job_id, "api_key_id": key_id, **p} for p in found]
        )
    return len(found)


@dataclass(frozen=True)
class Hit:
    id: int
    job_id: uuid.UUID
    job_tag: str | None
    media_url: str
    media_name: str | None
    kind: str
    start: float
    end: float
    text: str
    highlight: str
    score: float


def search(
    session: Session,
    api_key_id: uuid.UUID,
    query: str,
    *,
    limit: int,
    after: tuple[float, int] | None = None,
    job_id: uuid.UUID | None = None,
) -> list[Hit]:
    """The key's best passages for the query, best first (then newest), after a cursor of
    (score, id) from the last page."""
    params: dict[str, Any] = {
        "key": api_key_id,
        "limit": limit,
        "job": job_id,
        "after_score": after[0] if after else None,
        "after_id": after[1] if after else None,
    }
    if session.get_bind().dialect.name == "postgresql":
        statement = _POSTGRES
        params["q"] = query
    else:
        match = fts5_query(query)
        if not match:
            return []
        statement = _SQLITE
        params["q"] = match
    rows = session.execute(_typed(statement), params).mappings()
    return [
        Hit(
            int(row["id"]),
            uuid.UUID(str(row["job_id"])),
            row["job_tag"],
            row["media_url"],
            row["media_name"],
            row["kind"],
            float(row["start"]),
            float(row["end"]),
            row["text"],
            row["highlight"],
            float(row["score"]),
        )
        for row in rows
    ]


# The rank is computed for every match, then only the page is highlighted (ts_headline
# re-parses its text: on every match it would cost more than the search).
_POSTGRES = """
WITH q AS (SELECT websearch_to_tsquery('english', :q) AS query),
hits AS (
    SELECT p.id, p.job_id, p.kind, p.start, p."end", p.text,
           ts_rank_cd(p.tsv, q.query)::float8 AS score
    FROM passages p, q
    WHERE p.tsv @@ q.query AND p.api_key_id = :key
      AND (CAST(:job AS uuid) IS NULL OR p.job_id = CAST(:job AS uuid))
),
page AS (
    SELECT * FROM hits
    WHERE CAST(:after_score AS float8) IS NULL
       OR (score, id) < (CAST(:after_score AS float8), CAST(:after_id AS bigint))
    ORDER BY score DESC, id DESC
    LIMIT :limit
)
SELECT page.*, j.job_tag, j.media_url, j.media_name,
       ts_headline('english', page.text, q.query,
                   'StartSel=<b>, StopSel=</b>, MaxWords=35, MinWords=12, MaxFragments=2')
           AS highlight
FROM page JOIN jobs j ON j.id = page.job_id, q
ORDER BY page.score DESC, page.id DESC
"""

_SQLITE = """
WITH hits AS (
    SELECT p.id, p.job_id, p.kind, p.start, p."end", p.text, -bm25(passages_fts) AS score,
           snippet(passages_fts, 0, '<b>', '</b>', '…', 24) AS highlight
    FROM passages_fts JOIN passages p ON p.id = passages_fts.rowid
    WHERE passages_fts MATCH :q AND p.api_key_id = :key
      AND (:job IS NULL OR p.job_id = :job)
)
SELECT hits.*, j.job_tag, j.media_url, j.media_name FROM hits JOIN jobs j ON j.id = hits.job_id
WHERE :after_score IS NULL OR hits.score < :after_score
   OR (hits.score = :after_score AND hits.id < :after_id)
ORDER BY hits.score DESC, hits.id DESC
LIMIT :limit
"""

_TOKEN = re.compile(r'-?"[^"]*"?|\S+')


def fts5_query(query: str) -> str:
    """Web-search syntax as an FTS5 query: words must all match, "quoted phrases" match as
    phrases, `or` between two terms matches either, `-word` excludes. Every term is quoted,
    so nothing a user types is FTS5 syntax."""
    terms: list[str] = []
    excluded: list[str] = []
    either = False
    for token in _TOKEN.findall(query):
        negative = token.startswith("-") and len(token) > 1
        word = token[1:] if negative else token
        if word.lower() == "or" and not negative:
            either = bool(terms)
            continue
        quoted = '"' + word.strip('"').replace('"', "") + '"'
        if quoted == '""':
            continue
        if negative:
            excluded.append(quoted)
        elif either:
            terms[-1] = f"({terms[-1]} OR {quoted})"
            either = False
        else:
            terms.append(quoted)
    if not terms:
        return ""
    match = " AND ".join(terms)
    return f"({match}) NOT ({' OR '.join(excluded)})" if excluded else match


@dataclass(frozen=True)
class JobPassage:
    id: int
    kind: str
    start: float
    end: float
    text: str


def job_passages(session: Session, job_id: uuid.UUID) -> list[JobPassage]:
    """Every passage of a job, in time order."""
    rows = session.execute(
        select(Passage.id, Passage.kind, Passage.start, Passage.end, Passage.text)
        .where(Passage.job_id == job_id)
        .order_by(Passage.start, Passage.id)
    )
    return [JobPassage(*row) for row in rows]


def best_in_job(session: Session, job_id: uuid.UUID, question: str, *, limit: int) -> list[int]:
    """The ids of a job's passages that share words with a question, best first. Any word
    counts (a question's words rarely all appear in one passage); the rank rewards passages
    with more of them, closer together."""
    if session.get_bind().dialect.name == "postgresql":
        statement = _POSTGRES_ANY
        params: dict[str, Any] = {"job": job_id, "q": question, "limit": limit}
    else:
        words = [f'"{word}"' for word in re.findall(r"\w+", question)]
        if not words:
            return []
        statement = _SQLITE_ANY
        params = {"job": job_id, "q": " OR ".join(words), "limit": limit}
    return [int(row[0]) for row in session.execute(_typed(statement), params)]


# plainto_tsquery drops stop words and stems the rest, joined by & ; | makes any word count.
_POSTGRES_ANY = """
WITH q AS (SELECT replace(plainto_tsquery('english', :q)::text, '&', '|')::tsquery AS query)
SELECT p.id FROM passages p, q
WHERE p.job_id = CAST(:job AS uuid) AND p.tsv @@ q.query
ORDER BY ts_rank_cd(p.tsv, q.query) DESC, p.id
LIMIT :limit
"""

_SQLITE_ANY = """
SELECT p.id FROM passages_fts JOIN passages p ON p.id = passages_fts.rowid
WHERE passages_fts MATCH :q AND p.job_id = :job
ORDER BY bm25(passages_fts), p.id
LIMIT :limit
"""


def _typed(statement: str) -> TextClause:
    """The statement with its ids bound as UUIDs (SQLite stores them as 32 hex digits)."""
    ids = [name for name in ("key", "job") if f":{name}" in statement]
    return text(statement).bindparams(*(bindparam(name, type_=Uuid) for name in ids))
