"""The one piece of the worker the API may import: sending work and checking the broker."""

from __future__ import annotations

import logging

from amqp.exceptions import ChannelError
from celery import Celery
from kombu.exceptions import OperationalError

from db.session import Message
from scenecap.core.errors import BrokerUnavailable
from scenecap.core.settings import Settings
from scenecap.core.tasks import WEBHOOKS_QUEUE, queue_of
from worker.celery_app import create_celery

log = logging.getLogger(__name__)


class JobQueue:
    """Sends tasks to the workers through the configured broker."""

    def __init__(self, celery: Celery) -> None:
        self.celery = celery

    @classmethod
    def of(cls, settings: Settings) -> JobQueue:
        return cls(create_celery(settings))

    def send(self, message: Message) -> None:
        """Send a committed unit of work's message (db.session calls this after commit)."""
        queue = queue_of(message.task)
        try:
            self.celery.send_task(
                message.task,
                args=list(message.args),
                queue=queue,
                countdown=message.countdown or None,
                # The arguments are a few ids: Celery's safe repr of them costs more than this.
                argsrepr=repr(list(message.args)),
                kwargsrepr="{}",
            )
        except (OperationalError, OSError) as exc:
            if queue == WEBHOOKS_QUEUE:
                # The event row is committed: the outbox sweep sends it when the broker is back.
                log.warning("broker unavailable; %s is left to the outbox sweep", message.task)
                return
            raise BrokerUnavailable("the job queue is unavailable; try again shortly") from exc

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
