"""Logging for every scenecap process: text or one JSON object per line, with the job id.

The job id lives in a context variable set around each job's work; asyncio tasks and
`to_thread` copy the context, so captioning threads log it too.
"""

from __future__ import annotations

import json
import logging
import re
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from datetime import UTC, datetime
from typing import Any

from scenecap.core.settings import Settings

current_job_id: ContextVar[str | None] = ContextVar("scenecap_job_id", default=None)
# Celery's own layout, so its readers (and ours: the tests grep "ERROR/") keep working.
TEXT_FORMAT = "[%(asctime)s: %(levelname)s/%(processName)s] %(message)s%(job_suffix)s"


@contextmanager
def job_context(job_id: uuid.UUID | str) -> Iterator[None]:
    """Tag every log line inside the block with this job id."""
    token = current_job_id.set(str(job_id))
    try:
        yield
    finally:
        current_job_id.reset(token)


class JobIdFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        job_id = current_job_id.get()
        record.job_id = job_id
        record.job_suffix = f" [job {job_id}]" if job_id else ""
        return True


class RedactTokens(logging.Filter):
    """Access-log lines never hold a share link's token (whoever reads the logs could open
    the link): `token=...` in a logged URL becomes `token=[redacted]`."""

    _TOKEN = re.compile(r"(\btoken=)[^&\s\"]+")

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.args, tuple):
            record.args = tuple(
                self._TOKEN.sub(r"\1[redacted]", arg) if isinstance(arg, str) else arg
                for arg in record.args
            )
        return True


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "process": record.processName,
            "message": record.getMessage(),
        }
        job_id = getattr(record, "job_id", None)
        if job_id:
            entry["job_id"] = job_id
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry, ensure_ascii=False)


def log_config(settings: Settings, level: str | None = None) -> dict[str, Any]:
    """A logging.config.dictConfig for our processes (uvicorn's loggers included)."""
    formatter: dict[str, Any] = (
        {"()": JsonFormatter} if settings.log_format == "json" else {"format": TEXT_FORMAT}
    )
    passthrough = {"handlers": [], "propagate": True}
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "filters": {"job": {"()": JobIdFilter}, "tokens": {"()": RedactTokens}},
        "formatters": {"scenecap": formatter},
        "handlers": {
            "stderr": {
                "class": "logging.StreamHandler",
                "formatter": "scenecap",
                "filters": ["job"],
            }
        },
        "root": {"handlers": ["stderr"], "level": level or settings.log_level},
        "loggers": {
            "uvicorn": passthrough,
            "uvicorn.error": passthrough,
            "uvicorn.access": {**passthrough, "filters": ["tokens"]},
        },
    }
