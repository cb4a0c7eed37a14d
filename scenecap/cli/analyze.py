"""`scenecap analyze PATH_OR_URL`: the whole pipeline in this process, no service needed.

It runs the worker's own `run_job` against a throwaway SQLite database, so the results are
exactly what the service would give, and draws the job's progress as it goes.
"""

from __future__ import annotations

import asyncio
import json
import sys
import tempfile
import time
import uuid
from collections import deque
from pathlib import Path
from typing import Any

from api.views import job_out
from db import frames, jobs
from db.keys import create_key
from db.session import Message, make_engine, make_session_factory
from migrations.apply import upgrade
from scenecap.cli.output import ProgressBar, exit_code, fail, summary
from scenecap.core.errors import MediaUnreachable, ScenecapError
from scenecap.core.media import METADATA_TYPES, SNIFF_BYTES, TRANSCRIPT, media_name, sniff_media
from scenecap.core.settings import Settings
from scenecap.core.speech import check_speech
from scenecap.core.tasks import RUN_WORK_ITEM
from scenecap.store import open_store
from worker.run import run_job
from worker.runtime import Runtime
from worker.segments.items import run_work_item
from worker.vision import make_backend


def media_url_for(target: str) -> tuple[str, str]:
    """(URL the pipeline fetches, media type shown) for a path or an http(s) URL."""
    if "://" in target and not target.startswith("file://"):
        return target, "video"
    path = Path(target.removeprefix("file://")).expanduser().resolve()
    if not path.is_file():
        raise MediaUnreachable(f"no such file: {target}")
    with path.open("rb") as media:
        kind = sniff_media(media.read(SNIFF_BYTES)).kind
    return f"file://{path}", kind


def analyze(
    target: str,
    settings: Settings,
    fields: dict[str, Any] | None = None,
    *,
    progress: ProgressBar | None = None,
) -> dict[str, Any]:
    """Run one job in-process; return it as the API would show it, with stage timings.

    `fields` are the job's request fields (use_scenes, max_frames, segment_seconds,
    frames_per_segment). A segment-mode job's work items run here too, one after another,
    as the job queues them."""
    media_url, media_type = media_url_for(target)
    fields = dict(fields or {})
    if TRANSCRIPT in fields.get("metadata", ()):
        check_speech(settings)
    if media_type != "video":  # a still image has no stretches of time: no segment mode
        fields.pop("segment_seconds", None)
    with tempfile.TemporaryDirectory(prefix="scenecap-analyze-") as home:
        # Local use: the operator's own URLs (localhost included) are fair game here.
        settings = settings.model_copy(
            update={
                "database_url": f"sqlite:///{home}/analyze.db",
                "media_store": f"file://{home}/store",
                "allow_private_urls": True,
            }
        )
        upgrade(settings.database_url)
        engine = make_engine(settings.database_url)
        queued: deque[Message] = deque()
        session_factory = make_session_factory(engine, queued.append)
        with session_factory.begin() as session:
            key, _plaintext = create_key(session, "analyze")
            job_id = jobs.create_job(
                session,
                api_key_id=key.id,
                media_url=media_url,
                media_name=media_name(media_url) or Path(media_url.removeprefix("file://")).name,
                media_type=media_type,
                requested_metadata=fields.pop("metadata", list(METADATA_TYPES)),
                **fields,
            ).id
        loop = asyncio.new_event_loop()
        backend = make_backend(settings)
        rt = Runtime(
            settings=settings,
            session_factory=session_factory,
            store=open_store(settings),
            backend=backend,
            worker_id="analyze",
            loop=loop,
            progress_listener=progress,
            local_files=True,
        )
        started = time.perf_counter()
        try:
            run_job(job_id, rt)
            while queued:
                message = queued.popleft()
                if message.task == RUN_WORK_ITEM:
                    run_work_item(uuid.UUID(message.args[0]), int(message.args[1]), rt)
        finally:
            loop.run_until_complete(backend.aclose())
            loop.close()
            if progress is not None:
                progress.close()
        total = time.perf_counter() - started
        result = _job(session_factory, job_id)
        engine.dispose()
    result["timings"]["total"] = round(total, 3)
    return result


def _job(session_factory: Any, job_id: uuid.UUID) -> dict[str, Any]:
    with session_factory() as session:
        job = jobs.get_job(session, job_id, with_results=True)
        assert job is not None
        view = job_out(job, timings=frames.stage_timings(session, job_id))
    return view.model_dump(mode="json")


def run_analyze(target: str, settings: Settings, fields: dict[str, Any], *, as_json: bool) -> int:
    """The command: print the job (summary or JSON); exit 1 with one line if it failed."""
    try:
        job = analyze(target, settings, fields, progress=ProgressBar(sys.stderr))
    except ScenecapError as exc:
        return fail(exc.code, exc.message)
    if as_json:
        print(json.dumps(job, indent=2))
    elif job["status"] == "COMPLETED":
        print(summary(job))
    return exit_code(job)
