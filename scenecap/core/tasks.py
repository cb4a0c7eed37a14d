"""The names of the worker's tasks and queues: the contract between who sends and who runs."""

from __future__ import annotations

MEDIA_QUEUE = "media"
WEBHOOKS_QUEUE = "webhooks"

PROCESS_JOB = "scenecap.media.process_job"
RUN_WORK_ITEM = "scenecap.media.work_item"
REAP_JOBS = "scenecap.media.reap_jobs"
EXPIRE_MEDIA = "scenecap.media.expire"
DELIVER_WEBHOOK = "scenecap.webhooks.deliver"
SWEEP_WEBHOOKS = "scenecap.webhooks.sweep"


def queue_of(task: str) -> str:
    """The queue a task runs on: webhooks apart, so slow receivers never hold up media work."""
    return WEBHOOKS_QUEUE if task.startswith("scenecap.webhooks.") else MEDIA_QUEUE
