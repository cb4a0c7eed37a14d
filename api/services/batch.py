"""POST /v2/media/categories/batch (docs/api.md, "Batches"): each request validated and
created on its own, as if sent alone; one Idempotency-Key for the whole batch."""

from __future__ import annotations

import asyncio
import hashlib
import json
from typing import Any

from pydantic import ValidationError
from sqlalchemy.orm import Session
from starlette.concurrency import run_in_threadpool

from api.auth import Caller
from api.errors import validation_failed
from api.services.jobs import Prepared, Submission, inspect_job, prepare_job, store_job
from api.services.media_check import InspectedMedia, MediaInspector
from db import jobs
from db.session import release_connection
from scenecap.core.errors import IdempotencyConflict, ScenecapError
from scenecap.core.settings import Settings
from scenecap.schemas import CategoriesRequest, ErrorBody
from scenecap.schemas.cost import BatchItem, BatchRequest, BatchResponse
from scenecap.store import MediaStore


async def submit_batch(
    session: Session,
    key: Caller,
    body: BatchRequest,
    *,
    idempotency_key: str | None,
    refused: dict[int, ScenecapError],
    inspector: MediaInspector,
    store: MediaStore,
    settings: Settings,
) -> BatchResponse:
    """`refused` holds the items already turned away (the rate limit, counted per item).

    Every item is checked as if sent alone; their media are looked at concurrently, under one
    deadline (URL_CHECK_SECONDS), and the jobs are stored under one hold of the key's lock.
    With an Idempotency-Key, item i is stored under "<key>#i" with a hash of the whole batch
    and i: a replay finds every job it made, and the key reused for another batch is a 409
    before anything is created."""
    batch = _Batch(session, key, body, idempotency_key, settings)
    outcomes = await run_in_threadpool(batch.prepare, refused)
    waiting = {i: o for i, o in outcomes.items() if isinstance(o, Prepared)}
    looked = await asyncio.gather(
        *(inspect_job(prepared, inspector) for prepared in waiting.values()),
        return_exceptions=True,
    )
    media_of = dict(zip(waiting, looked, strict=True))
    return await run_in_threadpool(batch.store, outcomes, media_of, store)


Outcome = Prepared | Submission | ScenecapError


class _Batch:
    """A batch's two steps on a thread, either side of looking at its media."""

    def __init__(
        self,
        session: Session,
        key: Caller,
        body: BatchRequest,
        idempotency_key: str | None,
        settings: Settings,
    ) -> None:
        self.session, self.key, self.body, self.settings = session, key, body, settings
        self.idempotency_key = idempotency_key
        self.batch_hash = _fingerprint(body.requests)

    def item_hash(self, index: int) -> str:
        return hashlib.sha256(f"{self.batch_hash}:{index}".encode()).hexdigest()

    def prepare(self, refused: dict[int, ScenecapError]) -> dict[int, Outcome]:
        """Each item checked as if sent alone: prepared, already made, or refused."""
        self._check_idempotency()
        outcomes: dict[int, Outcome] = {}
        for index, raw in enumerate(self.body.requests):
            try:
                if index in refused:
                    raise refused[index]
                outcomes[index] = self._prepare_one(index, raw)
            except IdempotencyConflict:
                raise
            except ScenecapError as exc:
                outcomes[index] = exc
        release_connection(self.session)  # none is held while the media are looked at
        return outcomes

    def _check_idempotency(self) -> None:
        """A 409 before anything is made if the key was used for another batch."""
        if self.idempotency_key is None:
            return
        made = jobs.hashes_by_idempotency_prefix(
            self.session, self.key.id, f"{self.idempotency_key}#"
        )
        for item_key, request_hash in made.items():
            place = item_key.rpartition("#")[2]
            if not place.isdigit() or request_hash != self.item_hash(int(place)):
                raise IdempotencyConflict(
                    "this Idempotency-Key was used with a different batch", {"batch": True}
                )

    def _prepare_one(self, index: int, raw: dict[str, Any]) -> Prepared | Submission:
        try:
            request = CategoriesRequest.model_validate(raw)
        except ValidationError as exc:
            raise validation_failed(exc.errors()) from None
        keyed = self.idempotency_key is not None
        return prepare_job(
            self.session,
            self.key,
            request,
            idempotency_key=f"{self.idempotency_key}#{index}" if keyed else None,
            settings=self.settings,
            fingerprint=self.item_hash(index) if keyed else None,
        )

    def store(
        self,
        outcomes: dict[int, Outcome],
        media_of: dict[int, InspectedMedia | BaseException],
        store: MediaStore,
    ) -> BatchResponse:
        """Store the prepared jobs whose media passed; every item's answer, in order."""
        results = []
        for index in range(len(self.body.requests)):
            try:
                outcome = self._stored(outcomes[index], media_of.get(index), store)
            except IdempotencyConflict:
                raise
            except ScenecapError as exc:
                error = ErrorBody(code=exc.code, message=exc.message, details=exc.details)
                results.append(BatchItem(index=index, status=exc.status_code, error=error))
                continue
            status = 202 if outcome.created else 200
            results.append(BatchItem(index=index, status=status, job_id=outcome.job_id))
        return BatchResponse(results=results)

    def _stored(
        self, outcome: Outcome, media: InspectedMedia | BaseException | None, store: MediaStore
    ) -> Submission:
        if isinstance(outcome, ScenecapError):
            raise outcome
        if not isinstance(outcome, Prepared):
            return outcome
        if isinstance(media, BaseException):
            raise media
        assert media is not None  # every prepared item's media was looked at
        return store_job(
            self.session, self.key, outcome, media, store=store, settings=self.settings
        )


def _fingerprint(requests: list[dict[str, Any]]) -> str:
    canonical = json.dumps(requests, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(canonical.encode()).hexdigest()
