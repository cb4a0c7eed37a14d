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
from pathlib import Path
from typing import Any, TextIO

from api.schemas import JobOut
from db import frames, jobs
from db.keys import create_key
from db.migrate import upgrade
from db.models import JobStage
from db.session import make_engine, make_session_factory
from scenecap.errors import MediaUnreachable, ScenecapError
from scenecap.media import METADATA_TYPES, SNIFF_BYTES, sniff_media
from scenecap.settings import Settings
from worker.runner import Runtime, run_job
from worker.vision import make_backend


class ProgressBar:
    """A bar redrawn in place on a terminal; plain lines (one per stage or 10%) otherwise."""

    WIDTH = 30

    def __init__(self, stream: TextIO) -> None:
        self.stream = stream
        self.tty = stream.isatty()
        self.last: tuple[str, int] = ("", -100)

    def __call__(self, stage: JobStage, percent: int) -> None:
        label = stage.value.replace("_", " ")
        if self.tty:
            filled = self.WIDTH * percent // 100
            bar = "#" * filled + "." * (self.WIDTH - filled)
            self.stream.write(f"\r[{bar}] {percent:3d}%  {label:<18}")
        elif stage.value != self.last[0] or percent - self.last[1] >= 10:
            self.stream.write(f"{percent:3d}%  {label}\n")
        else:
            return
        self.last = (stage.value, percent)
        self.stream.flush()

    def close(self) -> None:
        if self.tty:
            self.stream.write("\n")
            self.stream.flush()


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
    *,
    use_scenes: bool = False,
    max_frames: int = 60,
    progress: ProgressBar | None = None,
) -> dict[str, Any]:
    """Run one job in-process; return it as the API would show it, with stage timings."""
    media_url, media_type = media_url_for(target)
    with tempfile.TemporaryDirectory(prefix="scenecap-analyze-") as home:
        # Local use: the operator's own URLs (localhost included) are fair game here.
        settings = settings.model_copy(
            update={"database_url": f"sqlite:///{home}/analyze.db", "allow_private_urls": True}
        )
        upgrade(settings.database_url)
        engine = make_engine(settings.database_url)
        session_factory = make_session_factory(engine)
        with session_factory.begin() as session:
            key, _plaintext = create_key(session, "analyze")
            job_id = jobs.create_job(
                session,
                api_key_id=key.id,
                media_url=media_url,
                media_type=media_type,
                requested_metadata=list(METADATA_TYPES),
                use_scenes=use_scenes,
                max_frames=max_frames,
            ).id
        loop = asyncio.new_event_loop()
        backend = make_backend(settings)
        rt = Runtime(
            settings=settings,
            session_factory=session_factory,
            backend=backend,
            worker_id="analyze",
            loop=loop,
            enqueue_webhook=lambda _event, _delay: None,
            progress_listener=progress,
            local_files=True,
        )
        started = time.perf_counter()
        try:
            run_job(job_id, rt)
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
        view = JobOut.of(job, timings=frames.stage_timings(session, job_id))
    return view.model_dump(mode="json")


def summary(job: dict[str, Any]) -> str:
    """The readable form of a finished job."""
    media = job.get("media") or {}
    lines = [
        f"{job['media_url']}",
        f"  {media.get('duration', 0):.1f} s, {media.get('width')}x{media.get('height')}, "
        f"{media.get('fps', 0):.2f} fps, {media.get('codec', '?')}",
    ]
    results = job.get("results") or {}
    if results.get("description"):
        lines += ["", results["description"]]
    for name in job["metadata"]:
        entries = results.get(name) or []
        if entries:
            top = ", ".join(f"{e['name']} ({e['count']})" for e in entries[:8])
            lines.append(f"  {name}: {top}")
    lines.append("")
    for frame in results.get("frames", []):
        scene = (
            f" [scene {frame['scene_start']:.2f}-{frame['scene_end']:.2f}]"
            if frame.get("scene_start") is not None
            else ""
        )
        lines.append(f"  {frame['timestamp']:8.3f} s{scene}  {frame['caption']}")
    timings = job.get("timings") or {}
    lines += [
        "",
        "time: " + ", ".join(f"{k.replace('_', ' ')} {v:.2f} s" for k, v in timings.items()),
    ]
    return "\n".join(lines)


def run_analyze(
    target: str, settings: Settings, *, use_scenes: bool, as_json: bool, max_frames: int
) -> int:
    """The command: print the job (summary or JSON); exit 1 with one line if it failed."""
    try:
        job = analyze(
            target,
            settings,
            use_scenes=use_scenes,
            max_frames=max_frames,
            progress=ProgressBar(sys.stderr),
        )
    except ScenecapError as exc:
        print(f"scenecap: error: {exc.code}: {exc.message}", file=sys.stderr)
        return 1
    if as_json:
        print(json.dumps(job, indent=2))
    elif job["status"] == "COMPLETED":
        print(summary(job))
    return exit_code(job)


def exit_code(job: dict[str, Any]) -> int:
    """0 for a completed job; else 1, after one line saying why it did not complete."""
    if job["status"] == "COMPLETED":
        return 0
    error = job.get("error") or {}
    reason = f"{error.get('code', job['status'])}: {error.get('message', '')}"
    print(f"scenecap: error: {reason}", file=sys.stderr)
    return 1
