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
from api.services.media_check import MediaInspector
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
    batch_hash = _fingerprint(body.requests)

    def item_hash(index: int) -> str:
        return hashlib.sha256(f"{batch_hash}:{index}".encode()).hexdigest()

    def prepare() -> dict[int, Prepared | Submission | ScenecapError]:
        if idempotency_key is not None:
            made = jobs.hashes_by_idempotency_prefix(session, key.id, f"{idempotency_key}#")
            for item_key, request_hash in made.items():
                place = item_key.rpartition("#")[2]
                if not place.isdigit() or request_hash != item_hash(int(place)):
                    raise IdempotencyConflict(
                        "this Idempotency-Key was used with a different batch", {"batch": True}
                    )
        outcomes: dict[int, Prepared | Submission | ScenecapError] = {}
        for index, raw in enumerate(body.requests):
            try:
                if index in refused:
                    raise refused[index]
                try:
                    request = CategoriesRequest.model_validate(raw)
                except ValidationError as exc:
                    raise validation_failed(exc.errors()) from None
                outcomes[index] = prepare_job(
                    session,
                    key,
                    request,
                    idempotency_key=f"{idempotency_key}#{index}" if idempotency_key else None,
                    settings=settings,
                    fingerprint=item_hash(index) if idempotency_key else None,
                )
            except IdempotencyConflict:
                raise
            except ScenecapError as exc:
                outcomes[index] = exc
        release_connection(session)  # none is held while the media are looked at
        return outcomes

    outcomes = await run_in_threadpool(prepare)
    waiting = {i: o for i, o in outcomes.items() if isinstance(o, Prepared)}
    looked = await asyncio.gather(
        *(inspect_job(prepared, inspector) for prepared in waiting.values()),
        return_exceptions=True,
    )
    media_of = dict(zip(waiting, looked, strict=True))

    def stored() -> BatchResponse:
        results = []
        for index in range(len(body.requests)):
            outcome = outcomes[index]
            try:
                if isinstance(outcome, ScenecapError):
                    raise outcome
                if isinstance(outcome, Prepared):
                    media = media_of[index]
                    if isinstance(media, BaseException):
                        raise media
                    outcome = store_job(
                        session, key, outcome, media, store=store, settings=settings
                    )
            except IdempotencyConflict:
                raise
            except ScenecapError as exc:
                error = ErrorBody(code=exc.code, message=exc.message, details=exc.details)
                results.append(BatchItem(index=index, status=exc.status_code, error=error))
                continue
            status = 202 if outcome.created else 200
            results.append(BatchItem(index=index, status=status, job_id=outcome.job_id))
        return BatchResponse(results=results)

    return await run_in_threadpool(stored)


def _fingerprint(requests: list[dict[str, Any]]) -> str:
    canonical = json.dumps(requests, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(canonical.encode()).hexdigest()
