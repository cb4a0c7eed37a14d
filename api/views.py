"""JSON bodies of the hot reads, built from db.views rows in JobOut's shape (scenecap/schemas
documents it; a test holds the two equal).

The job's results, metadata, media and usage arrive as the JSON text the database holds and
are spliced in as they are (orjson.Fragment): a completed job's results are most of its
bytes, and parsing them only to write them out again was most of a GET's cost.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import orjson

from db.frames import read_timings
from db.models import Job
from db.views import JSON_COLUMNS, Row
from scenecap.core.enums import JobStatus, as_utc, as_utc_or_none
from scenecap.schemas import JobError, JobOut

# pydantic's way: aware datetimes in UTC with "Z", microseconds when there are any.
_OPTIONS = orjson.OPT_UTC_Z


def job_out(
    job: Job, *, with_results: bool = True, timings: dict[str, float] | None = None
) -> JobOut:
    """A job row as the API shows it (the slower twin of job_body, for rows already loaded)."""
    return JobOut(
        job_id=job.id,
        status=JobStatus(job.status),
        percent_complete=job.percent_complete,
        stage=job.stage,
        created_at=as_utc_or_none(job.created_at),
        started_at=as_utc_or_none(job.started_at),
        updated_at=as_utc_or_none(job.updated_at),
        completed_at=as_utc_or_none(job.completed_at),
        media_url=job.media_url,
        media_name=job.media_name,
        media_type=job.media_type,
        metadata=job.requested_metadata,
        use_scenes=job.use_scenes,
        scene_threshold=job.scene_threshold,
        min_scene_seconds=job.min_scene_seconds,
        max_frames=job.max_frames,
        segment_seconds=job.segment_seconds,
        frames_per_segment=job.frames_per_segment if job.segment_seconds else None,
        model=job.model,
        job_tag=job.job_tag,
        webhook_url=job.webhook_url,
        media=job.media_info,
        results=job.results if with_results and job.status == JobStatus.COMPLETED else None,
        usage=job.usage,
        error=JobError(code=job.error_code, message=job.error_message or "")
        if job.error_code
        else None,
        timings=timings,
    )


def job_body(row: Row) -> bytes:
    """GET /v2/media/categories/{job_id}: the job, its results and its stage timings."""
    document = _document(row, with_results=True)
    document["timings"] = read_timings(row["timings"])
    return orjson.dumps(document, option=_OPTIONS)


def page_body(rows: list[Row], next_cursor: str | None) -> bytes:
    """GET /v2/media/categories: a page of jobs without their results."""
    page = {
        "data": [_document(row, with_results=False) for row in rows],
        "next_cursor": next_cursor,
    }
    return orjson.dumps(page, option=_OPTIONS)


def _document(row: Row, *, with_results: bool) -> dict[str, Any]:
    json_text = {name: _fragment(row[name]) for name in JSON_COLUMNS}
    completed = row["status"] == JobStatus.COMPLETED
    return {
        "job_id": row["id"],
        "status": row["status"],
        "percent_complete": row["percent_complete"],
        "stage": row["stage"],
        "created_at": _utc(row["created_at"]),
        "started_at": _utc(row["started_at"]),
        "updated_at": _utc(row["updated_at"]),
        "completed_at": _utc(row["completed_at"]),
        "media_url": row["media_url"],
        "media_name": row["media_name"],
        "media_type": row["media_type"],
        "metadata": json_text["requested_metadata"],
        "use_scenes": row["use_scenes"],
        "scene_threshold": row["scene_threshold"],
        "min_scene_seconds": row["min_scene_seconds"],
        "max_frames": row["max_frames"],
        "segment_seconds": row["segment_seconds"],
        "frames_per_segment": row["frames_per_segment"] if row["segment_seconds"] else None,
        "model": row["model"],
        "job_tag": row["job_tag"],
        "webhook_url": row["webhook_url"],
        "media": json_text["media_info"],
        "results": _fragment(row["results"]) if with_results and completed else None,
        "usage": json_text["usage"],
        "error": {"code": row["error_code"], "message": row["error_message"] or ""}
        if row["error_code"]
        else None,
        "timings": None,
    }


def _fragment(text: str | None) -> orjson.Fragment | None:
    # SQL NULL and a JSON null both mean "none".
    return None if text is None or text == "null" else orjson.Fragment(text)


def _utc(value: datetime | None) -> datetime | None:
    return as_utc(value) if value is not None else None
