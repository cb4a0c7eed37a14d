"""POST /v2/media/categories/{job_id}/ask: a question about one completed job, answered from
its own passages (docs/api.md, "Questions").

Retrieval stays inside the job: the passages that share words with the question (best
first), each with its neighbours in time, then the chapters, then the rest of the job spread
evenly over its length, for as long as the model's context has room. The model is told to
answer only from them and to cite their times; a time it cites that no retrieved passage has
is dropped from the answer and from the citations. The `local` backend has no model: its
answer is the best passages themselves."""

from __future__ import annotations

import re
import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass

from sqlalchemy.orm import Session, sessionmaker
from starlette.concurrency import run_in_threadpool

from api.auth import Caller
from api.services import quota
from db import jobs, search, spend
from db.search import JobPassage
from db.spend import Spent
from scenecap.core.backoff import model_client, send_retrying
from scenecap.core.enums import JobStatus
from scenecap.core.errors import (
    JobNotFinished,
    JobNotFound,
    ValidationFailed,
    VisionBackendUnavailable,
)
from scenecap.core.settings import Settings
from scenecap.core.tokens import TEMPLATE_TOKENS, text_tokens
from scenecap.schemas.search import AskAnswer, AskRequest, AskUsage, Citation

LOCAL_MODEL = "local-extractive"
BEST = 8  # passages found by their words; each brings its neighbours
EXTRACTED = 3  # passages in a local-extractive answer
SYSTEM = (
    "You answer questions about one video from notes taken while watching and listening to "
    "it. Use only the notes. Never guess."
)
PROMPT = (
    "Notes on the video, each starting with its time in seconds as [start-end] and what it "
    "is (seen in a frame, seen in a segment, a chapter, said, a label):\n{notes}\n\n"
    "Question: {question}\n\n"
    "Answer in a few sentences from the notes only. After each statement cite the notes it "
    "rests on by copying their times exactly, like [12.0-22.0]. If the notes do not answer "
    "the question, say that the video does not show it."
)
_SAID_AS = {"transcript": "said", "frame": "seen in a frame", "segment": "seen in a segment"}
# [12.0-22.0], [12-22 s], [12.0 s - 22.0 s], [12.0]: what models write when asked to cite.
_CITED = re.compile(r"\[\s*(\d+(?:\.\d+)?)\s*s?\s*(?:[-\u2013]\s*(\d+(?:\.\d+)?)\s*s?\s*)?\]")


@dataclass(frozen=True)
class Retrieved:
    passages: list[JobPassage]  # what the model may read, in time order
    best: list[JobPassage]  # those that share words with the question, best first
    overview: str  # the job's description


class QuestionModel:
    """The vision model's server, asked text questions over one pooled async httpx client."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._client = model_client(
            settings.vlm_base_url,
            settings.vlm_api_key.get_secret_value(),
            timeout=settings.vlm_timeout_seconds,
        )

    async def answer(self, prompt: str, max_tokens: int) -> tuple[str, str, AskUsage]:
        body = {
            "model": self.settings.vlm_model,
            "messages": [
                {"role": "system", "content": SYSTEM},
                {"role": "user", "content": prompt},
            ],
            "max_tokens": max_tokens,
            "temperature": self.settings.vlm_temperature,
        }
        response, _retries = await send_retrying(
            lambda: self._client.post("chat/completions", json=body),
            self.settings.vlm_max_retries + 1,
            unavailable=VisionBackendUnavailable,
            server="vision model",
        )
        try:
            answer = response.json()
            text = str(answer["choices"][0]["message"]["content"] or "")
        except (ValueError, KeyError, IndexError, TypeError) as exc:
            raise VisionBackendUnavailable("vision model answered without choices") from exc
        used = answer.get("usage") or {}
        prompt_tokens = int(used.get("prompt_tokens") or 0)
        completion_tokens = int(used.get("completion_tokens") or 0)
        usage = AskUsage(
            prompt_tokens=prompt_tokens,
            completion_tokens=completion_tokens,
            total_tokens=prompt_tokens + completion_tokens,
            passages=0,
        )
        return text.strip(), str(answer.get("model") or body["model"]), usage

    async def aclose(self) -> None:
        await self._client.aclose()


async def answer_question(
    reader: sessionmaker[Session],
    writer: sessionmaker[Session],
    model: QuestionModel | None,
    settings: Settings,
    key: Caller,
    raw_job_id: str,
    body: AskRequest,
) -> AskAnswer:
    room = (
        settings.vlm_context_tokens
        - body.max_tokens
        - TEMPLATE_TOKENS
        - text_tokens(SYSTEM, PROMPT, body.question)
    )
    if model is not None and room < 200:
        raise ValidationFailed(
            "max_tokens: leaves no room in the model's context for the video's notes",
            {"field": "max_tokens", "context_tokens": settings.vlm_context_tokens},
        )

    def read() -> Retrieved:
        with reader() as session:
            return retrieve(session, key, raw_job_id, body.question, room)

    found = await run_in_threadpool(read)
    if model is None:
        return _extractive(found)
    prompt = prompt_for(found, body.question)
    estimate = text_tokens(SYSTEM, prompt) + TEMPLATE_TOKENS + body.max_tokens
    async with charged(writer, key, estimate) as settle:
        text, model_name, usage = await model.answer(prompt, body.max_tokens)
        settle(usage.prompt_tokens, usage.completion_tokens)
    text, cited = checked(text, found.passages)
    usage.passages = len(found.passages)
    return AskAnswer(answer=text, citations=cited, model=model_name, usage=usage)


@asynccontextmanager
async def charged(
    writer: sessionmaker[Session], key: Caller, estimate: int
) -> AsyncIterator[Callable[[int, int], None]]:
    """A question's cost in the key's ledger: its estimate charged before the model is asked
    (429 if the quota has no room for it), corrected to what the model reported after. A
    failed answer keeps its estimate: it may have cost that."""

    def charge() -> None:
        with writer.begin() as session:
            quota.charge(session, key, estimate)

    await run_in_threadpool(charge)
    reported: list[int] = []
    yield lambda prompt_tokens, completion_tokens: reported.extend(
        (prompt_tokens, completion_tokens)
    )
    if reported:
        correction = Spent(reported[0] - estimate, reported[1])

        def correct() -> None:
            with writer.begin() as session:
                spend.record(session, key.id, correction)

        await run_in_threadpool(correct)


def prompt_for(found: Retrieved, question: str) -> str:
    notes = "\n".join(_note(p) for p in found.passages)
    if found.overview:
        notes = f"[overview] {found.overview}\n{notes}"
    return PROMPT.format(notes=notes, question=question)


def retrieve(session: Session, key: Caller, raw_job_id: str, question: str, room: int) -> Retrieved:
    try:
        job_id = uuid.UUID(raw_job_id)
    except ValueError:
        raise JobNotFound(f"no job {raw_job_id!r}") from None
    job = jobs.get_owned_job(session, job_id, key.id)
    if job is None:
        raise JobNotFound(f"no job {raw_job_id!r}")
    if job.status != JobStatus.COMPLETED:
        raise JobNotFinished(
            f"job {job_id} is {job.status}: questions are answered from completed jobs",
            {"status": str(job.status)},
        )
    everything = search.job_passages(session, job_id)
    by_id = {p.id: p for p in everything}
    best = [by_id[i] for i in search.best_in_job(session, job_id, question, limit=BEST)]
    overview = str((job.results or {}).get("description") or "")
    overview = overview[: max(0, room // 4) * 3]  # a quarter of the room at most
    return Retrieved(choose(everything, best, room - text_tokens(overview)), best, overview.strip())


def choose(everything: list[JobPassage], best: list[JobPassage], room: int) -> list[JobPassage]:
    """The passages that fit `room` tokens, most wanted first; returned in time order."""
    of_kind: dict[str, list[JobPassage]] = {}
    for passage in everything:
        of_kind.setdefault(passage.kind, []).append(passage)
    place = {p.id: i for kind in of_kind.values() for i, p in enumerate(kind)}
    wanted: list[JobPassage] = []
    for hit in best:
        same = of_kind[hit.kind]
        at = place[hit.id]
        wanted += [hit, *same[max(0, at - 1) : at], *same[at + 1 : at + 2]]
        wanted += [  # what was said while it was seen, and what was seen while it was said
            p
            for p in everything
            if p.kind in ("transcript", "frame", "segment")
            and p.kind != hit.kind
            and p.start <= hit.end
            and hit.start <= p.end
        ]
    wanted += of_kind.get("chapter", [])
    rest = [p for p in everything if p.kind in ("segment", "frame", "transcript")]
    wanted += [rest[i] for i in spread(len(rest))]
    chosen: dict[int, JobPassage] = {}
    used = 0
    for passage in wanted:
        cost = text_tokens(_note(passage)) + 1
        if passage.id not in chosen and used + cost <= room:
            chosen[passage.id] = passage
            used += cost
    return sorted(chosen.values(), key=lambda p: (p.start, p.id))


def spread(count: int) -> list[int]:
    """0..count-1 coarse to fine (0, then every 2^k-th, then halfway between those, ...), so
    that any prefix covers the whole length as evenly as it can."""
    return sorted(range(count), key=lambda i: (-(i & -i) if i else -(1 << 62), i))


def checked(answer: str, passages: list[JobPassage]) -> tuple[str, list[Citation]]:
    """The answer without the times no passage has, and the passages it cites, in order."""
    at: dict[tuple[str, str], list[JobPassage]] = {}
    for passage in passages:
        at.setdefault((f"{passage.start:.1f}", f"{passage.end:.1f}"), []).append(passage)
    cited: dict[int, JobPassage] = {}

    def keep(match: re.Match[str]) -> str:
        start = float(match.group(1))
        end = float(match.group(2) or match.group(1))
        found = at.get((f"{start:.1f}", f"{end:.1f}"))
        if not found:
            return ""  # a time the model invented
        cited.update((p.id, p) for p in found)
        return match.group(0)

    text = _CITED.sub(keep, answer)
    text = re.sub(r"[ \t]+([.,;:!?])", r"\1", re.sub(r"[ \t]{2,}", " ", text)).strip()
    return text, [_citation(p) for p in cited.values()]


def _extractive(found: Retrieved) -> AskAnswer:
    top = sorted(found.best[:EXTRACTED], key=lambda p: (p.start, p.id))
    if top:
        text = "\n".join(f"{_time(p)} {p.text}" for p in top)
    else:
        text = found.overview or "Nothing seen, said or labelled in this video matches that."
    return AskAnswer(
        answer=text,
        citations=[_citation(p) for p in top],
        model=LOCAL_MODEL,
        usage=AskUsage(passages=len(top)),
    )


def _note(passage: JobPassage) -> str:
    return f"{_time(passage)} ({_SAID_AS.get(passage.kind, passage.kind)}) {passage.text}"


def _time(passage: JobPassage) -> str:
    return f"[{passage.start:.1f}-{passage.end:.1f}]"


def _citation(passage: JobPassage) -> Citation:
    return Citation.model_validate(
        {"start": passage.start, "end": passage.end, "kind": passage.kind, "text": passage.text}
    )
