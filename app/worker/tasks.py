"""Celery tasks. They take ids, open their own database session and call services (never the API).

Every task is idempotent: ``run_training_job`` claims its row before doing anything, so a second
delivery of the same message (a redelivery after a worker died, a re-dispatch by housekeeping)
returns ``skipped`` without touching the job.
"""

from __future__ import annotations

import logging
from functools import lru_cache
from typing import Any

from celery import shared_task
from sqlalchemy.orm import Session, sessionmaker

from app.core.config import get_settings
from app.db.session import make_engine, make_sessionmaker, write_engine
from app.services import training

log = logging.getLogger("patchscreen.worker")


@lru_cache(maxsize=4)
def session_factory(url: str | None = None) -> sessionmaker[Session]:
    """One engine per database URL per worker process (DATABASE_URL is all a worker needs).

    On SQLite every worker transaction takes the write lock when it begins (BEGIN IMMEDIATE): a
    transaction that read and then writes would otherwise fail at once when an annotator's label
    was committed in between, failing a finished training job at its very last step.
    """
    return make_sessionmaker(write_engine(make_engine(url or get_settings().resolved_database_url)))


@shared_task(
    name="patchscreen.run_training_job", acks_late=True, reject_on_worker_lost=True, ignore_result=True
)
def run_training_job(job_id: int) -> str:
    """Train, evaluate, register and (by policy) activate; returns the job's final status."""
    status = training.run_job(job_id, session_factory(), settings=get_settings())
    log.info("training job %s: %s", job_id, status)
    return status


@shared_task(name="patchscreen.bench_paper_cell", acks_late=True, reject_on_worker_lost=True)
def bench_paper_cell(cell: dict[str, Any], options: dict[str, Any]) -> list[dict[str, Any]]:
    """One (method, labeled count, sampling) cell of the paper protocol, run by ml.bench.paper."""
    from app.worker.bench import run_cell

    return run_cell(cell, options)
