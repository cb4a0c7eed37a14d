"""POST /v2/media/categories/batch (docs/api.md, "Batches"): each request validated and
created on its own, as if sent alone; one Idempotency-Key for the whole batch."""

from __future__ import annotations

import hashlib
import json
from typing import Any

from pydantic import ValidationError
from sqlalchemy.orm import Session

from api.auth import Caller
from api.errors import validation_failed
from api.schemas import CategoriesRequest, ErrorBody
from api.schemas.cost import BatchItem, BatchRequest, BatchResponse
from api.services.jobs import submit_job
from db import jobs
from scenecap.core.errors import IdempotencyConflict, ScenecapError


def submit_batch(
    session: Session,
    key: Caller,
    body: BatchRequest,
    *,
    idempotency_key: str | None,
    refused: dict[int, ScenecapError],
    **submit: Any,
) -> BatchResponse:
    """`refused` holds the items already turned away (the rate limit, counted per item).

    With an Idempotency-Key, item i is stored under "<key>#i" with a hash of the whole batch
    and i: a replay finds every job it made, and the key reused for another batch is a 409
    before anything is created."""
    batch_hash = _fingerprint(body.requests)

    def item_hash(index: int) -> str:
        return hashlib.sha256(f"{batch_hash}:{index}".encode()).hexdigest()

    if idempotency_key is not None:
        made = jobs.hashes_by_idempotency_prefix(session, key.id, f"{idempotency_key}#")
        for item_key, request_hash in made.items():
            place = item_key.rpartition("#")[2]
            if not place.isdigit() or request_hash != item_hash(int(place)):
                raise IdempotencyConflict(
                    "this Idempotency-Key was used with a different batch", {"batch": True}
                )
    results = []
    for index, raw in enumerate(body.requests):
        try:
            if index in refused:
                raise refused[index]
            try:
                request = CategoriesRequest.model_validate(raw)
            except ValidationError as exc:
                raise validation_failed(exc.errors()) from None
            made_job = submit_job(
                session,
                key,
                request,
                idempotency_key=f"{idempotency_key}#{index}" if idempotency_key else None,
                fingerprint=item_hash(index) if idempotency_key else None,
                **submit,
            )
        except IdempotencyConflict:
            raise
        except ScenecapError as exc:
            error = ErrorBody(code=exc.code, message=exc.message, details=exc.details)
            results.append(BatchItem(index=index, status=exc.status_code, error=error))
            continue
        status = 202 if made_job.created else 200
        results.append(BatchItem(index=index, status=status, job_id=made_job.job_id))
    return BatchResponse(results=results)


def _fingerprint(requests: list[dict[str, Any]]) -> str:
    canonical = json.dumps(requests, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(canonical.encode()).hexdigest()
