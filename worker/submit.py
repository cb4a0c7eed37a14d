"""The one piece of the worker the API may import: submitting work and checking the broker."""

from __future__ import annotations

import contextlib
import uuid

from amqp.exceptions import ChannelError
from kombu.exceptions import OperationalError

from scenecap.errors import BrokerUnavailable
from scenecap.settings import Settings
from worker.celery_app import MEDIA_QUEUE, WEBHOOKS_QUEUE, create_celery

PROCESS_JOB = "scenecap.media.process_job"
DELIVER_WEBHOOK = "scenecap.webhooks.deliver"


class JobQueue:
    """Sends tasks to the workers through the configured broker."""

    def __init__(self, settings: Settings) -> None:
        self.celery = create_celery(settings)

    def enqueue_job(self, job_id: uuid.UUID) -> None:
        """Queue a committed job for processing."""
        try:
            self.celery.send_task(PROCESS_JOB, args=[str(job_id)], queue=MEDIA_QUEUE)
        except (OperationalError, OSError) as exc:
            raise BrokerUnavailable("the job queue is unavailable; try again shortly") from exc

    def enqueue_webhook(self, event_id: uuid.UUID) -> None:
        """Queue a delivery attempt of a committed webhook event (the sweep retries if lost)."""
        # If the broker is down the event row is still committed: the outbox sweep sends it.
        with contextlib.suppress(OperationalError, OSError):
            self.celery.send_task(DELIVER_WEBHOOK, args=[str(event_id)], queue=WEBHOOKS_QUEUE)

    def depth(self, queue: str) -> int:
        """Messages waiting in a queue (0 if it was never declared, or the broker is down)."""
        try:
            with self.celery.connection_for_read() as connection, connection.channel() as channel:
                return int(channel.queue_declare(queue, passive=True).message_count)
        except (OperationalError, OSError, ChannelError):
            return 0

    def reachable(self) -> bool:
        """Tell whether the broker accepts a connection right now."""
        try:
            with self.celery.connection_for_write() as connection:
                connection.ensure_connection(max_retries=1, timeout=2)
            return True
        except (OperationalError, OSError):
            return False
