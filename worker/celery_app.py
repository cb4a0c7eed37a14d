"""The Celery application: Redis (or the embedded filesystem broker), JSON only, late acks."""

from __future__ import annotations

import logging
import logging.config
from typing import Any

from celery import Celery, signals

from scenecap.core.logs import log_config
from scenecap.core.settings import Settings, get_settings
from scenecap.core.tasks import EXPIRE_MEDIA, MEDIA_QUEUE, REAP_JOBS, SWEEP_WEBHOOKS, queue_of


def broker_config(settings: Settings) -> dict[str, Any]:
    """Broker URL and options; `embedded` is kombu's filesystem transport (no server)."""
    if settings.broker_url != "embedded":
        return {
            "broker_url": settings.broker_url,
            # Redelivery of unacked tasks after a lost worker waits this long; the lease
            # reaper usually notices sooner.
            "broker_transport_options": {"visibility_timeout": 3600},
        }
    folder = settings.embedded_broker_dir
    for sub in ("queue", "processed", "control"):
        (folder / sub).mkdir(parents=True, exist_ok=True)
    return {
        "broker_url": "filesystem://",
        "broker_transport_options": {
            "data_folder_in": str(folder / "queue"),
            "data_folder_out": str(folder / "queue"),
            "processed_folder": str(folder / "processed"),
            # Exchange tables; kombu's default is ./control, wherever the process was started.
            "control_folder": str(folder / "control"),
            "store_processed": False,
        },
    }


def _route(name: str, *_args: Any, **_options: Any) -> dict[str, str]:
    return {"queue": queue_of(name)}


def create_celery(settings: Settings) -> Celery:
    app = Celery("scenecap", include=["worker.tasks"])
    app.conf.update(
        **broker_config(settings),
        task_serializer="json",
        result_serializer="json",
        accept_content=["json"],
        task_ignore_result=True,
        task_acks_late=True,
        task_reject_on_worker_lost=True,
        worker_prefetch_multiplier=1,
        task_default_queue=MEDIA_QUEUE,
        task_routes=(_route,),
        broker_connection_retry_on_startup=True,
        broker_connection_timeout=3,
        # Fail a submission fast when the broker is down instead of hanging the request.
        task_publish_retry_policy={
            "max_retries": 2,
            "interval_start": 0,
            "interval_step": 0.5,
            "interval_max": 1,
        },
        worker_hijack_root_logger=False,
        beat_schedule={
            "reap-lapsed-jobs": {
                "task": REAP_JOBS,
                "schedule": float(settings.reaper_interval_seconds),
            },
            "sweep-webhook-outbox": {
                "task": SWEEP_WEBHOOKS,
                "schedule": float(settings.reaper_interval_seconds),
            },
            "expire-stored-media": {
                "task": EXPIRE_MEDIA,
                "schedule": float(settings.retention_interval_seconds),
            },
        },
        enable_utc=True,
    )
    return app


@signals.setup_logging.connect
def _configure_logging(loglevel: int | str | None = None, **_: Any) -> None:
    # Connected, so Celery leaves logging to us: the same format (text or JSON) as the API.
    level = logging.getLevelName(loglevel) if isinstance(loglevel, int) else loglevel
    logging.config.dictConfig(log_config(get_settings(), level))


celery_app = create_celery(get_settings())
