"""Search over completed jobs and questions about one (docs/api.md, "Search" and
"Questions"): what is indexed and when, web-search syntax, ranking, keyset pages, owners,
bad input, and answers whose citations are checked."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import httpx
import pytest
from sqlalchemy import func, select

from api.main import create_app
from db import jobs as job_repo
from db.keys import create_key
from db.models import Passage
from scenecap.core.enums import JobStatus
from tests.api.test_categories import assert_error
from tests.conftest import is_terminal, poll_job, serve_app

KITCHEN = {
    "description": "Someone makes tea in a kitchen.",
    "frames": [
        {"timestamp": 1.0, "caption": "A red kettle on a stove in a small kitchen."},
        {"timestamp": 2.0, "caption": "A red mug; far from it, on a shelf, a kettle."},
        {"timestamp": 3.0, "caption": "A bicycle leans against the wall."},
        {"timestamp": 4.0, "caption": "A blue kettle, poured."},
    ],
    "transcript": {
        "segments": [{"start": 5.0, "end": 7.5, "text": "the water for the tea is boiling"}]
    },
    "tags": [{"name": "teapot", "count": 2, "timestamps": [1.0, 4.0]}],
}
SEGMENTED = {
    "segments": [
        {"index": 0, "start": 0.0, "end": 10.0, "caption": "A dog runs across a beach."},
        {"index": 1, "start": 10.0, "end": 20.0, "caption": "The dog digs in the sand."},
    ],
    "chapters": [
        {"start": 0.0, "end": 20.0, "title": "Beach walk", "summary": "A dog plays by the sea."}
    ],
}


@pytest.fixture
def owner(session_factory: Any) -> tuple[uuid.UUID, str]:
    with session_factory.begin() as session:
        key, plaintext = create_key(session, "search")
        return key.id, plaintext


def completed_job(
    session_factory: Any, key_id: uuid.UUID, results: dict[str, Any], tag: str = "t"
) -> str:
    """A job completed the way the worker completes one (indexing included)."""
    with session_factory.begin() as session:
        job = job_repo.create_job(
            session,
            api_key_id=key_id,
            media_url=f"https://example.com/{tag}.mp4",
            media_type="video",
            requested_metadata=["tags"],
            use_scenes=False,
            job_tag=tag,
            status=JobStatus.PROCESSING,
        )
        job_repo.complete_job(session, job.id, results=results, usage={})
        return str(job.id)


@pytest.fixture
def searcher(api_url: str, owner: tuple[uuid.UUID, str]) -> Iterator[httpx.Client]:
    headers = {"Authorization": f"Bearer {owner[1]}"}
    with httpx.Client(base_url=api_url, headers=headers, timeout=30) as http:
        yield http


def hits(client: httpx.Client, q: str, **params: Any) -> list[dict[str, Any]]:
    response = client.get("/v2/media/search", params={"q": q, **params})
    assert response.status_code == 200, response.text
    return list(response.json()["data"])


class TestSearch:
    def test_every_kind_of_passage_is_found_with_its_time_and_highlight(
        self, session_factory: Any, owner: tuple[uuid.UUID, str], searcher: httpx.Client
    ) -> None:
        kitchen = completed_job(session_factory, owner[0], KITCHEN, "kitchen")
        beach = completed_job(session_factory, owner[0], SEGMENTED, "beach")
        [said] = hits(searcher, "boiling water")
        assert (said["kind"], said["start"], said["end"]) == ("transcript", 5.0, 7.5)
        assert said["job_id"] == kitchen and said["job_tag"] == "kitchen"
        assert said["media_url"] == "https://example.com/kitchen.mp4"
        assert "<b>boiling</b>" in said["highlight"] and "<b>water</b>" in said["highlight"]
        [label] = hits(searcher, "teapot")
        assert (label["kind"], label["start"], label["end"]) == ("label", 1.0, 4.0)
        found = {(h["kind"], h["start"]) for h in hits(searcher, "dog")}
        assert found == {("segment", 0.0), ("segment", 10.0), ("chapter", 0.0)}
        assert {h["job_id"] for h in hits(searcher, "beach")} == {beach}
        # Stems match: "runs" finds "running".
        assert [h["start"] for h in hits(searcher, "running")] == [0.0]

    def test_words_close_together_rank_first(
        self, session_factory: Any, owner: tuple[uuid.UUID, str], searcher: httpx.Client
    ) -> None:
        completed_job(session_factory, owner[0], KITCHEN)
        ranked = hits(searcher, "red kettle")
        assert [h["start"] for h in ranked] == [1.0, 2.0]
        assert ranked[0]["score"] > ranked[1]["score"] > 0

    @pytest.mark.parametrize(
        ("query", "starts"),
        [
            ('"red kettle"', [1.0]),  # a phrase: adjacent words only
            ("kettle -red", [4.0]),  # excluded word
            ("bicycle or poured", [3.0, 4.0]),  # either word
            ("kettle bicycle", []),  # all words, by default
            ("the", []),  # stop words alone match nothing, and are no error
        ],
    )
    def test_web_search_syntax(
        self,
        session_factory: Any,
        owner: tuple[uuid.UUID, str],
        searcher: httpx.Client,
        query: str,
        starts: list[float],
    ) -> None:
        completed_job(session_factory, owner[0], KITCHEN)
        found = hits(searcher, query)
        assert sorted(h["start"] for h in found if h["kind"] == "frame") == starts
        assert all(h["kind"] == "frame" for h in found)

    def test_only_the_callers_jobs_and_the_job_filter(
        self,
        session_factory: Any,
        owner: tuple[uuid.UUID, str],
        searcher: httpx.Client,
        client: httpx.Client,
    ) -> None:
        mine = completed_job(session_factory, owner[0], KITCHEN, "mine")
        other = completed_job(session_factory, owner[0], KITCHEN, "other")
        assert {h["job_id"] for h in hits(searcher, "kettle")} == {mine, other}
        assert {h["job_id"] for h in hits(searcher, "kettle", job_id=mine)} == {mine}
        # `client` is another key: it finds nothing of ours, even by job id.
        assert hits(client, "kettle") == []
        assert hits(client, "kettle", job_id=mine) == []

    def test_unfinished_jobs_are_not_searchable(
        self, session_factory: Any, owner: tuple[uuid.UUID, str], searcher: httpx.Client
    ) -> None:
        with session_factory.begin() as session:
            job = job_repo.create_job(
                session,
                api_key_id=owner[0],
                media_url="https://example.com/x.mp4",
                media_type="video",
                requested_metadata=["tags"],
                use_scenes=False,
                status=JobStatus.PROCESSING,
            )
            job_repo.fail_job(session, job.id, code="MEDIA_UNREADABLE", message="kettle")
        assert hits(searcher, "kettle") == []

    def test_pages_follow_one_another_without_overlap(
        self, session_factory: Any, owner: tuple[uuid.UUID, str], searcher: httpx.Client
    ) -> None:
        frames = [
            {"timestamp": float(i), "caption": "kettle " * (1 + i % 4) + f"number {i}"}
            for i in range(25)
        ]
        completed_job(session_factory, owner[0], {"frames": frames})
        seen: list[dict[str, Any]] = []
        cursor = None
        pages = 0
        while True:
            params: dict[str, str | int] = {"q": "kettle", "limit": 10}
            if cursor:
                params["cursor"] = cursor
            page = searcher.get("/v2/media/search", params=params).json()
            seen += page["data"]
            pages += 1
            cursor = page["next_cursor"]
            if cursor is None:
                break
        assert pages == 3
        assert sorted(h["start"] for h in seen) == [float(i) for i in range(25)]
        scores = [h["score"] for h in seen]
        assert scores == sorted(scores, reverse=True)

    @pytest.mark.parametrize(
        "params",
        [
            {"q": ""},
            {"q": "   "},
            {"q": "kettle", "limit": 0},
            {"q": "kettle", "limit": 101},
            {"q": "kettle", "cursor": "not-a-cursor"},
            {"q": "kettle", "job_id": "nope"},
            {},
        ],
        ids=["empty", "blank", "limit-0", "limit-101", "cursor", "job-id", "no-q"],
    )
    def test_bad_input_is_422(self, searcher: httpx.Client, params: dict[str, Any]) -> None:
        assert_error(searcher.get("/v2/media/search", params=params), 422, "VALIDATION_ERROR")

    def test_a_purged_job_leaves_nothing_behind(
        self, session_factory: Any, owner: tuple[uuid.UUID, str], searcher: httpx.Client
    ) -> None:
        job_id = completed_job(session_factory, owner[0], KITCHEN)
        assert hits(searcher, "kettle")
        purged = searcher.delete(f"/v2/media/categories/{job_id}", params={"purge": "true"})
        assert purged.status_code == 204, purged.text
        assert hits(searcher, "kettle") == []
        with session_factory() as session:
            left = session.scalar(select(func.count()).where(Passage.job_id == uuid.UUID(job_id)))
        assert left == 0


class TestAsk:
    def ask(self, client: httpx.Client, job_id: str, question: str) -> httpx.Response:
        return client.post(f"/v2/media/categories/{job_id}/ask", json={"question": question})

    def test_the_answer_cites_only_times_of_retrieved_passages(
        self, session_factory: Any, owner: tuple[uuid.UUID, str], searcher: httpx.Client
    ) -> None:
        job_id = completed_job(session_factory, owner[0], KITCHEN)
        response = self.ask(searcher, job_id, "Where is the bicycle?")
        assert response.status_code == 200, response.text
        answer = response.json()
        # The fake model cites the bicycle's frame and a time the video does not have.
        assert answer["citations"] == [
            {
                "start": 3.0,
                "end": 3.0,
                "kind": "frame",
                "text": "A bicycle leans against the wall.",
            }
        ]
        assert "[3.0-3.0]" in answer["answer"] and "9999" not in answer["answer"]
        assert answer["model"] == "fake-vlm"
        assert answer["usage"]["passages"] >= 1 and answer["usage"]["total_tokens"] > 0

    def test_a_job_not_completed_is_409_and_anothers_job_404(
        self,
        session_factory: Any,
        owner: tuple[uuid.UUID, str],
        searcher: httpx.Client,
        client: httpx.Client,
    ) -> None:
        with session_factory.begin() as session:
            running = job_repo.create_job(
                session,
                api_key_id=owner[0],
                media_url="https://example.com/x.mp4",
                media_type="video",
                requested_metadata=["tags"],
                use_scenes=False,
                status=JobStatus.PROCESSING,
            )
        assert_error(self.ask(searcher, str(running.id), "what?"), 409, "JOB_NOT_FINISHED")
        with session_factory.begin() as session:  # no worker will ever run it
            job_repo.cancel_job(session, running.id)
        done = completed_job(session_factory, owner[0], KITCHEN)
        assert_error(self.ask(client, done, "what?"), 404, "JOB_NOT_FOUND")
        assert_error(self.ask(searcher, "not-a-job", "what?"), 404, "JOB_NOT_FOUND")

    @pytest.mark.parametrize(
        "body",
        [{}, {"question": ""}, {"question": "x", "max_tokens": 0}, {"question": "x", "y": 1}],
    )
    def test_bad_questions_are_422(
        self,
        session_factory: Any,
        owner: tuple[uuid.UUID, str],
        searcher: httpx.Client,
        body: dict[str, Any],
    ) -> None:
        job_id = completed_job(session_factory, owner[0], KITCHEN)
        response = searcher.post(f"/v2/media/categories/{job_id}/ask", json=body)
        assert_error(response, 422, "VALIDATION_ERROR")

    def test_an_answer_longer_than_the_context_allows_is_422(
        self, settings: Any, session_factory: Any, owner: tuple[uuid.UUID, str]
    ) -> None:
        job_id = completed_job(session_factory, owner[0], KITCHEN)
        small = settings.model_copy(update={"vlm_context_tokens": 1024})
        with app_client(small, owner[1]) as http:
            body = {"question": "what?", "max_tokens": 1000}
            response = http.post(f"/v2/media/categories/{job_id}/ask", json=body)
        error = assert_error(response, 422, "VALIDATION_ERROR")
        assert error["details"]["field"] == "max_tokens"

    def test_the_local_backend_answers_with_the_best_passages(
        self, settings: Any, session_factory: Any, owner: tuple[uuid.UUID, str]
    ) -> None:
        job_id = completed_job(session_factory, owner[0], KITCHEN)
        local = settings.model_copy(update={"vision_backend": "local"})
        with app_client(local, owner[1]) as http:
            answer = self.ask(http, job_id, "Is the tea water boiling?").json()
            nothing = self.ask(http, job_id, "zebra?").json()
        assert answer["model"] == "local-extractive"
        assert answer["citations"][0]["kind"] == "transcript"
        assert answer["answer"].startswith("[5.0-7.5] the water for the tea is boiling")
        assert nothing["citations"] == [] and nothing["answer"] == KITCHEN["description"]


@contextmanager
def app_client(settings: Any, key: str) -> Iterator[httpx.Client]:
    """A client of an API built with other settings, served for the length of a `with`."""
    with serve_app(create_app(settings)) as url:
        headers = {"Authorization": f"Bearer {key}"}
        with httpx.Client(base_url=url, headers=headers, timeout=30) as http:
            yield http


def test_a_job_the_worker_completes_is_searchable_and_answerable(
    client: httpx.Client, media_server: str, fake_vlm: Any, worker: Any
) -> None:
    """Indexed in the transaction that completes it: searchable the moment it is COMPLETED."""
    body = {"media_url": f"{media_server}/sample.mp4", "metadata": ["tags"]}
    job_id = client.post("/v2/media/categories", json=body).json()["job_id"]
    job = poll_job(client, job_id, until=is_terminal)
    assert job["status"] == "COMPLETED", job["error"]
    found = hits(client, "background", job_id=job_id, limit=100)
    frames = {h["start"] for h in found if h["kind"] == "frame"}
    assert frames == {f["timestamp"] for f in job["results"]["frames"]}
    asked = client.post(
        f"/v2/media/categories/{job_id}/ask", json={"question": "What background is there?"}
    ).json()
    assert asked["citations"] and all(c["start"] in frames for c in asked["citations"])
