"""A job's media, prepared for either mode (stage `downloading`): fetched once into the store
(or read from it), offered for reuse, then sniffed and probed in the sandbox."""

from __future__ import annotations

from pathlib import Path

from db import jobs
from scenecap.core.enums import JobStage
from scenecap.core.media import SNIFF_BYTES, sniff_media
from worker.job.progress import ProgressReporter
from worker.job.reuse import Reused, reused
from worker.job.spec import JobSpec, Media
from worker.pipeline.fetch import job_media
from worker.pipeline.probe import MEDIA_INFO, Limits, probe_media
from worker.pipeline.sandbox import SandboxLimits, run_sandboxed
from worker.runtime import Runtime


def prepare(
    spec: JobSpec, rt: Runtime, progress: ProgressReporter, directory: Path
) -> Media | Reused:
    """The job's media as a file in `directory` and what it is; or, when an earlier job of
    the key had the same media and plan, what that job found (the media is then not probed)."""
    path, sha256 = _fetch(spec, rt, progress, directory)
    earlier = reused(spec, path, rt, sha256)
    return earlier if earlier is not None else _probe(spec, rt, progress, path)


def _fetch(
    spec: JobSpec, rt: Runtime, progress: ProgressReporter, directory: Path
) -> tuple[Path, str | None]:
    """Stage `downloading`: the media as a local file (fetched once into the store), and its
    SHA-256 if it was fetched now."""
    settings = rt.settings
    progress.stage(JobStage.DOWNLOADING)
    path, sha256 = job_media(
        spec.id,
        spec.media_url,
        spec.media_data,
        rt.store,
        directory,
        settings,
        local_files=rt.local_files,
    )
    if spec.media_data is not None:  # the store holds it now: no need to keep two copies
        with rt.session_factory.begin() as session:
            jobs.clear_media_data(session, spec.id)
    return path, sha256


def _probe(spec: JobSpec, rt: Runtime, progress: ProgressReporter, path: Path) -> Media:
    """The end of stage `downloading`: what the file is (sniffed, then probed in the sandbox)."""
    settings = rt.settings
    with path.open("rb") as media:
        sniffed = sniff_media(media.read(SNIFF_BYTES))
    is_image = sniffed.kind == "image"
    info = run_sandboxed(
        lambda _send: probe_media(path, Limits.of(settings), is_image=is_image),
        SandboxLimits.of(settings),
        codec=MEDIA_INFO,
    )
    with rt.session_factory.begin() as session:
        jobs.set_media_info(session, spec.id, {**info.as_dict(), "mime": sniffed.mime})
    progress.stage(JobStage.DOWNLOADING, 1.0)
    return Media(path, info, is_image, sniffed.mime)
