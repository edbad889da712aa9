"""The Celery application: Redis as broker and result backend, configured from Settings.

Delivery guarantees come from Celery (``acks_late`` + ``reject_on_worker_lost``: a worker that dies
mid-task gives the message back), but the *truth* about a job is its ``training_jobs`` row: tasks
only carry ids, claim the row atomically and are therefore safe to deliver twice. A heartbeat on the
row (not the broker's visibility timeout, which must stay longer than the longest training run) is
what notices a dead worker quickly; see ``app.services.training.reap_stale_jobs``.

Routing: training goes to the ``gpu`` queue when a worker consuming it has announced itself in Redis
within the last ``QUEUE_PRESENCE_TTL_S`` seconds, otherwise to Celery's default queue, so a site
without a GPU still trains and a site with one never trains on a CPU worker by accident.
"""

from __future__ import annotations

import socket
from functools import lru_cache

from celery import Celery

from app.core.config import Settings, get_settings

GPU_QUEUE = "gpu"
DEFAULT_QUEUE = "celery"
QUEUE_PRESENCE_KEY = "patchscreen:queue-presence:{queue}:{host}"
QUEUE_PRESENCE_TTL_S = 30


def make_celery(settings: Settings | None = None) -> Celery:
    """A Celery app for these settings; with no REDIS_URL it is built but never used to send."""
    settings = settings or get_settings()
    url = settings.redis_url or "redis://127.0.0.1:6379/0"
    app = Celery("patchscreen", broker=url, backend=url, include=["app.worker.tasks"])
    app.conf.update(
        task_acks_late=True,
        task_reject_on_worker_lost=True,
        worker_prefetch_multiplier=1,
        task_default_queue=DEFAULT_QUEUE,
        task_track_started=True,
        task_serializer="json",
        result_serializer="json",
        accept_content=["json"],
        result_expires=7 * 24 * 3600,
        # Unacked messages come back after this long; it must exceed the longest training run or a
        # healthy job would be delivered twice (the row claim would refuse the copy anyway).
        broker_transport_options={"visibility_timeout": 12 * 3600, "socket_connect_timeout": 2},
        result_backend_transport_options={"socket_connect_timeout": 2},
        broker_connection_retry_on_startup=True,
        worker_send_task_events=True,
        task_send_sent_event=True,
        worker_hijack_root_logger=False,
    )
    return app


celery_app = make_celery()


@lru_cache(maxsize=8)
def celery_for(redis_url: str) -> Celery:
    """The app that sends to ``redis_url`` (the API's Settings may differ from the environment's).

    Tasks are ``shared_task``s, so every app built here knows them too.
    """
    if redis_url == celery_app.conf.broker_url:
        return celery_app
    return make_celery(Settings(redis_url=redis_url))


def announce_queues(redis_client, queues: list[str], host: str | None = None) -> None:
    """Record that this worker consumes ``queues`` (refreshed by the worker's heartbeat thread)."""
    host = host or socket.gethostname()
    for queue in queues:
        redis_client.set(QUEUE_PRESENCE_KEY.format(queue=queue, host=host), "1", ex=QUEUE_PRESENCE_TTL_S)


def training_queue(redis_client) -> str:
    """``gpu`` when a GPU worker is alive, else the default queue."""
    pattern = QUEUE_PRESENCE_KEY.format(queue=GPU_QUEUE, host="*")
    for _ in redis_client.scan_iter(match=pattern, count=100):
        return GPU_QUEUE
    return DEFAULT_QUEUE
