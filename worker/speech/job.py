"""A frame-mode job's transcript, made on a thread of its own beside the frame work, and kept
in the store so a retried job does not pay for it again."""

from __future__ import annotations

import asyncio
import json
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from concurrent.futures import TimeoutError as Pending
from pathlib import Path

from scenecap.core.enums import JobStage
from scenecap.core.errors import JobCancelled, StoredObjectMissing
from scenecap.store import paths
from worker.job.progress import ProgressReporter
from worker.job.spec import JobSpec, Media
from worker.runtime import Runtime
from worker.speech.transcribe import transcribe
from worker.speech.transcript import Transcript


class BackgroundTranscript:
    """Started as soon as the media is probed; `result` waits for it (the stage shown while
    the job waits is `transcribing`)."""

    def __init__(self, spec: JobSpec, media: Media, rt: Runtime) -> None:
        self.key = paths.transcript(spec.id)
        self.rt = rt
        self.started = time.monotonic()
        self.counts = (0, 1)
        self.stop = threading.Event()
        self.ready = _stored(rt, self.key)
        self.pool: ThreadPoolExecutor | None = None
        if self.ready is None and not media.info.has_audio:
            self.ready = Transcript()
        if self.ready is None:
            self.pool = ThreadPoolExecutor(1, thread_name_prefix="transcript")
            self.future = self.pool.submit(
                asyncio.run, self._transcribe(media.path, media.info.duration)
            )

    async def _transcribe(self, path: Path, duration: float) -> Transcript:
        def counted(done: int, total: int) -> None:
            self.counts = (done, total)
            if self.stop.is_set():
                raise JobCancelled("the job stopped")

        return await transcribe(path, duration, self.rt.settings, counted)

    def result(self, progress: ProgressReporter) -> Transcript:
        if self.ready is not None:
            return self.ready
        while True:
            try:
                transcript: Transcript = self.future.result(timeout=0.25)
                break
            except Pending:  # the frames are done first: show what the job waits for
                done, total = self.counts
                progress.stage(JobStage.TRANSCRIBING, done / total)
        progress.add_time(JobStage.TRANSCRIBING, time.monotonic() - self.started)
        self.rt.store.put(self.key, json.dumps(transcript.dumped()).encode())
        self.ready = transcript
        return transcript

    def close(self) -> None:
        """Stop after the chunks in flight (the job failed or was cancelled meanwhile)."""
        self.stop.set()
        if self.pool is not None:
            self.pool.shutdown(wait=True)


def _stored(rt: Runtime, key: str) -> Transcript | None:
    try:
        return Transcript.of(json.loads(rt.store.get(key)))
    except StoredObjectMissing:
        return None
