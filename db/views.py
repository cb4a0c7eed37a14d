"""The API's hot reads (GET a job, list jobs): one statement each, the columns a response
needs, JSON columns left as the text the database holds (the API splices it into its answer
instead of parsing and re-encoding it).

Statements are built once per dialect and shape (building and hashing a fresh one costs more
than running it) and run by db.reads.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from functools import cache
from typing import Any

from sqlalchemy import Select, Text, bindparam, cast, func, select, tuple_

from db.models import Job, JobStageTiming
from db.reads import Reads, Row
from scenecap.core.enums import JobKind

JOBS = Job.__table__.c
TIMINGS = JobStageTiming.__table__.c
JSON_COLUMNS = ("requested_metadata", "media_info", "usage")
PLAIN_COLUMNS = (
    "id",
    "status",
    "percent_complete",
    "stage",
    "created_at",
    "started_at",
    "updated_at",
    "completed_at",
    "media_url",
    "media_name",
    "media_type",
    "use_scenes",
    "scene_threshold",
    "min_scene_seconds",
    "max_frames",
    "segment_seconds",
    "frames_per_segment",
    "model",
    "job_tag",
    "webhook_url",
    "error_code",
    "error_message",
)


async def job_row(reads: Reads, job_id: uuid.UUID, api_key_id: uuid.UUID) -> Row | None:
    """The key's media job with `results` and `timings` as JSON text, or None."""
    statement = _job_statement(reads.dialect)
    rows = await reads.rows(statement, {"job_id": job_id, "key_id": api_key_id})
    return rows[0] if rows else None


async def job_state(reads: Reads, job_id: uuid.UUID) -> Row | None:
    """A job's status, stage and percent (what its event streams follow), or None."""
    rows = await reads.rows(_state_statement(), {"job_id": job_id})
    return rows[0] if rows else None


async def job_rows(
    reads: Reads,
    api_key_id: uuid.UUID,
    *,
    limit: int,
    before: tuple[datetime, uuid.UUID] | None,
    status: str | None,
    job_tag: str | None = None,
) -> list[Row]:
    """The key's media jobs (of this status, with this tag), newest first, after the
    (created_at, id) cursor (no results)."""
    statement = _page_statement(
        reads.dialect, before is not None, status is not None, job_tag is not None
    )
    values: dict[str, Any] = {"key_id": api_key_id, "limit": limit}
    if status is not None:
        values["status"] = status
    if job_tag is not None:
        values["job_tag"] = job_tag
    if before is not None:
        values["before_at"], values["before_id"] = before
    return await reads.rows(statement, values)


def _columns() -> list[Any]:
    as_text = [cast(JOBS[name], Text).label(name) for name in JSON_COLUMNS]
    return [*(JOBS[name] for name in PLAIN_COLUMNS), *as_text]


@cache
def _job_statement(dialect: str) -> Select[Any]:
    aggregate = func.json_object_agg if dialect == "postgresql" else func.json_group_object
    timings = (
        select(cast(aggregate(TIMINGS.stage, TIMINGS.seconds), Text))
        .where(TIMINGS.job_id == JOBS.id)
        .scalar_subquery()
        .label("timings")
    )
    return select(*_columns(), cast(JOBS.results, Text).label("results"), timings).where(
        JOBS.id == bindparam("job_id", type_=JOBS.id.type),
        JOBS.api_key_id == bindparam("key_id", type_=JOBS.id.type),
        JOBS.kind == JobKind.CATEGORIES.value,
    )


@cache
def _state_statement() -> Select[Any]:
    return select(JOBS.status, JOBS.stage, JOBS.percent_complete).where(
        JOBS.id == bindparam("job_id", type_=JOBS.id.type)
    )


@cache
def _page_statement(
    dialect: str, after_cursor: bool, by_status: bool, by_tag: bool = False
) -> Select[Any]:
    statement = select(*_columns()).where(
        JOBS.api_key_id == bindparam("key_id", type_=JOBS.id.type),
        JOBS.kind == JobKind.CATEGORIES.value,
    )
    if by_status:
        statement = statement.where(JOBS.status == bindparam("status", type_=JOBS.status.type))
    if by_tag:
        statement = statement.where(JOBS.job_tag == bindparam("job_tag", type_=JOBS.job_tag.type))
    if after_cursor:
        cursor = tuple_(
            bindparam("before_at", type_=JOBS.created_at.type),
            bindparam("before_id", type_=JOBS.id.type),
        )
        statement = statement.where(tuple_(JOBS.created_at, JOBS.id) < cursor)
    return statement.order_by(JOBS.created_at.desc(), JOBS.id.desc()).limit(bindparam("limit"))
