"""Starting a Celery worker the PatchScreen way: device logged, queues announced, housekeeping on.

Next to Celery's own loop every worker runs one daemon thread that, every few seconds, announces
the queues it consumes (so training is routed to ``gpu`` only while a GPU worker is alive) and does
the job housekeeping (reap dead jobs, re-send lost ones, automatic retraining).
"""

from __future__ import annotations

import logging
import socket
import threading

from celery.signals import worker_shutting_down

from app.core.config import Settings, get_settings
from app.services import training
from app.worker.celery_app import QUEUE_PRESENCE_TTL_S, announce_queues, celery_app

log = logging.getLogger("patchscreen.worker")
HOUSEKEEPING_S = 5.0


def describe_device(settings: Settings) -> str:
    from ml.train.loop import resolve_device

    dev = resolve_device(settings.device)
    if dev.type == "cuda":
        import torch

        props = torch.cuda.get_device_properties(dev.index or 0)
        return f"{dev} ({props.name}, {props.total_memory / 2**30:.0f} GiB)"
    import torch

    return f"cpu ({torch.get_num_threads()} threads)"


def start_housekeeping(queues: list[str], settings: Settings, stop: threading.Event) -> threading.Thread:
    import redis

    from app.worker.tasks import session_factory

    client = redis.Redis.from_url(settings.redis_url, socket_connect_timeout=2, socket_timeout=2)
    interval = min(HOUSEKEEPING_S, QUEUE_PRESENCE_TTL_S / 3)

    def loop() -> None:
        while True:
            try:
                announce_queues(client, queues)
            except Exception as exc:
                log.warning("could not announce queues to Redis: %s", exc)
            training.housekeeping(session_factory(), settings)
            if stop.wait(interval):
                return

    thread = threading.Thread(target=loop, name="patchscreen-housekeeping", daemon=True)
    thread.start()
    return thread


@worker_shutting_down.connect
def _on_shutdown(**_: object) -> None:
    """A warm shutdown (SIGTERM) stops the running job at its next iteration and re-queues it."""
    training.SHUTDOWN.set()


def start_celery_worker(
    queues: list[str],
    *,
    concurrency: int = 1,
    pool: str = "solo",
    loglevel: str = "INFO",
    settings: Settings | None = None,
) -> None:
    settings = settings or get_settings()
    device = describe_device(settings)
    if "gpu" in queues and not device.startswith("cuda"):
        log.warning("this worker consumes the gpu queue but has no CUDA device: it will train on %s", device)
    log.info("worker %s: queues %s, device %s", socket.gethostname(), ",".join(queues), device)
    stop = threading.Event()
    start_housekeeping(queues, settings, stop)
    try:
        celery_app.Worker(
            queues=queues,
            concurrency=concurrency,
            pool=pool,
            loglevel=loglevel.upper(),
            hostname=f"{'+'.join(queues)}@{socket.gethostname()}",
        ).start()
    finally:
        stop.set()
