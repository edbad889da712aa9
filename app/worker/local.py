"""The embedded default's worker: used when REDIS_URL is unset (``scripts/run``).

Mechanism: a separate *process* (``patchscreen worker --local``; ``patchscreen serve --with-worker``
starts it as a child of the server) that polls the ``training_jobs`` table once a second, claims the
oldest queued job and runs it with exactly the code a Celery task runs (``training.run_job``), so
job states, heartbeats, cancellation and the model registry behave identically. A process rather
than a thread in the server keeps training off the web server's interpreter lock; on a small CPU
machine it also leaves torch one core fewer than the machine has, so the pages stay responsive.
"""

from __future__ import annotations

import logging
import os
import signal
import threading
import time

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from app.core.config import Settings, get_settings
from app.db.models import TrainingJob
from app.services import training

log = logging.getLogger("patchscreen.worker.local")
POLL_S = 1.0
HOUSEKEEPING_S = 5.0


def next_queued_job(session: Session) -> int | None:
    return session.scalar(
        select(TrainingJob.id).where(TrainingJob.status == "queued").order_by(TrainingJob.id).limit(1)
    )


def run_once(session_factory: sessionmaker[Session], settings: Settings) -> str | None:
    """Run the oldest queued job, if any; returns its final status (None when nothing was queued)."""
    with session_factory() as session:
        job_id = next_queued_job(session)
    if job_id is None:
        return None
    return training.run_job(job_id, session_factory, settings=settings)


def run_forever(
    session_factory: sessionmaker[Session],
    settings: Settings | None = None,
    stop: threading.Event | None = None,
) -> None:
    settings = settings or get_settings()
    stop = stop or threading.Event()
    last_housekeeping = 0.0
    while not stop.is_set():
        if time.monotonic() - last_housekeeping >= HOUSEKEEPING_S:
            training.housekeeping(session_factory, settings)
            last_housekeeping = time.monotonic()
        try:
            status = run_once(session_factory, settings)
        except Exception:
            log.exception("local worker: job failed to run")
            status = None
        if status in (None, "skipped"):
            stop.wait(POLL_S)


def limit_cpu_threads() -> int:
    """Leave one core to the web server on a small machine (training still uses the rest)."""
    import torch

    threads = max(1, (os.cpu_count() or 2) - 1)
    torch.set_num_threads(threads)
    return threads


def main(settings: Settings | None = None) -> None:
    """Entry point of the local worker process; stops cleanly on SIGTERM / SIGINT."""
    from app.worker.tasks import session_factory

    settings = settings or get_settings()
    stop = threading.Event()

    def shut_down(*_: object) -> None:
        stop.set()
        training.SHUTDOWN.set()  # the running job stops at its next iteration and goes back to the queue

    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, shut_down)
    threads = limit_cpu_threads()
    from ml.train.loop import resolve_device

    log.info(
        "local worker started: device %s, %d torch threads, database %s",
        resolve_device(settings.device),
        threads,
        settings.resolved_database_url.split("@")[-1],
    )
    run_forever(session_factory(), settings, stop)
