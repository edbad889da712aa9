"""Training jobs: creating them, running them, and keeping their rows truthful.

The ``training_jobs`` row is the single source of truth about a job; Celery (or the embedded local
worker) only delivers job ids. Everything that could race goes through the row:

- *Creation* takes a job lock (a PostgreSQL advisory lock, SQLite's write lock) so two concurrent
  requests cannot both see "no job" and both insert one.
- *Claiming* is a conditional update from ``queued`` to ``running`` that bumps ``attempts``; a
  duplicate delivery finds the job no longer queued and does nothing (tasks are idempotent).
- *Every later write* by the worker is fenced on (status running, attempts = its attempt), so a
  worker that was presumed dead and replaced cannot overwrite its successor's result.
- *A dead worker* stops refreshing ``heartbeat_at``; ``reap_stale_jobs`` (run by every worker
  every few seconds and by the API whenever jobs are listed or created) re-queues the job once and
  then fails it, so no job stays "running" for longer than ``job_stale_after_s`` after its worker died.

Training reads only the database (patches and labels), so a worker on another host needs nothing
but DATABASE_URL. The label set is snapshotted by label id when the job starts: the model version
records exactly what it learned from, and labels arriving during training go into the next job.
"""

from __future__ import annotations

import logging
import math
import os
import socket
import threading
import time
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import numpy as np
from sqlalchemy import func, select, text, update
from sqlalchemy.orm import Session, sessionmaker

from app.core.config import Settings, get_settings
from app.db.base import utcnow
from app.db.models import Image, ModelVersion, PatchLabel, TrainingJob, User
from app.services.errors import Conflict, NotFound, ServiceError, Unavailable

log = logging.getLogger("patchscreen.training")

METHODS = ("ssl_gan", "convnet", "resnet34")
PRESETS = ("tiny", "small", "full")
ACTIVE_STATUSES = ("queued", "running")
FINISHED_STATUSES = ("succeeded", "failed", "cancelled")

# Liveness and debounce timings are Settings: job_heartbeat_s, job_stale_after_s, job_max_attempts,
# auto_retrain_quiet_s (see app/core/config.py).
VAL_FRACTION = 0.25
_JOB_LOCK_KEY = 0x5053_4A42  # "PSJB": the advisory lock that serialises job creation and claims
# Set when this worker process is asked to shut down: the running job stops at its next iteration
# and goes back to the queue without using up an attempt (a deploy is not a failure).
SHUTDOWN = threading.Event()


class TrainingError(ServiceError):
    """Base class of this module's errors: ``message`` is a sentence for the person who asked."""


class JobConflict(TrainingError, Conflict):
    """Another job is queued or running (the API answers 409 with its id)."""

    def __init__(self, job: TrainingJob) -> None:
        super().__init__(
            f"Training job {job.id} is already {job.status}; wait for it, cancel it, or send queue=true "
            "to run this one after it.",
            job_id=job.id,
        )
        self.job_id = job.id


class NotEnoughLabels(TrainingError, Conflict):
    """Training needs at least one healthy and one diseased labeled patch."""


class QueueUnavailable(TrainingError, Unavailable):
    """Redis (the job queue) cannot be reached."""


class JobNotFound(TrainingError, NotFound):
    """No training job with that id."""


# --------------------------------------------------------------------------------------- requests


@dataclass(frozen=True)
class JobRequest:
    method: str = "ssl_gan"
    preset: str = "small"
    epochs: int | None = None
    seed: int | None = None
    train_overrides: dict[str, Any] = field(default_factory=dict)  # e.g. max_iters_per_epoch (tests, demo)


def create_job(
    session: Session,
    request: JobRequest,
    *,
    user_id: int | None,
    queue: bool = False,
    trigger: str = "manual",
    settings: Settings | None = None,
) -> TrainingJob:
    """Queue a training job and hand it to a worker; raises JobConflict / QueueUnavailable.

    Nothing is written when it raises. With Redis configured the broker is pinged *before* the row
    is written, and a failed publish removes the row again, so a 503 leaves no orphan job.
    """
    settings = settings or get_settings()
    reap_stale_jobs(session, settings=settings)
    _require_labels(session)
    if settings.redis_url:
        _ping_redis(settings.redis_url)
    _lock_jobs(session)
    active = session.scalars(
        select(TrainingJob).where(TrainingJob.status.in_(ACTIVE_STATUSES)).order_by(TrainingJob.id)
    ).first()
    if active is not None and not queue:
        session.rollback()
        raise JobConflict(active)
    job = TrainingJob(
        status="queued",
        method=request.method,
        preset=request.preset,
        epochs=request.epochs,
        seed=request.seed,
        params={"train_overrides": dict(request.train_overrides)},
        progress={"message": "waiting for a worker"},
        requested_by_id=user_id,
        trigger=trigger,
    )
    session.add(job)
    session.commit()
    try:
        dispatch(session, job, settings)
    except QueueUnavailable:
        session.delete(job)
        session.commit()
        raise
    return job


def cancel_job(session: Session, job_id: int, *, user_id: int | None) -> TrainingJob:
    """Queued jobs are cancelled at once; a running one is flagged and its worker stops at the next
    iteration (the job turns ``cancelled`` when the worker acknowledges). Finished jobs are left as
    they are (cancelling twice is harmless)."""
    job = session.get(TrainingJob, job_id, with_for_update=True)
    if job is None:
        raise JobNotFound(f"training job {job_id} does not exist")
    if job.status == "queued":
        job.status = "cancelled"
        job.cancel_requested = True
        job.finished_at = utcnow()
        job.progress = {**(job.progress or {}), "message": f"cancelled before it started (user {user_id})"}
    elif job.status == "running":
        job.cancel_requested = True
        job.progress = {
            **(job.progress or {}),
            "message": "cancellation requested; stopping at the next iteration",
        }
    session.commit()
    return job


def get_job(session: Session, job_id: int) -> TrainingJob:
    job = session.get(TrainingJob, job_id)
    if job is None:
        raise JobNotFound(f"training job {job_id} does not exist")
    return job


def list_jobs(session: Session, *, limit: int = 50, offset: int = 0) -> list[TrainingJob]:
    return list(
        session.scalars(select(TrainingJob).order_by(TrainingJob.id.desc()).limit(limit).offset(offset))
    )


# --------------------------------------------------------------------------------------- dispatch


def dispatch(session: Session, job: TrainingJob, settings: Settings) -> None:
    """Hand a queued job to Celery; without Redis the local worker polls the table instead."""
    if not settings.redis_url:
        return
    import redis

    from app.worker.celery_app import celery_for, training_queue

    try:
        client = redis.Redis.from_url(settings.redis_url, socket_connect_timeout=2, socket_timeout=2)
        queue = training_queue(client)
        task_id = f"training-job-{job.id}-{int(time.time() * 1000)}"
        celery_for(settings.redis_url).send_task(
            "patchscreen.run_training_job",
            args=[job.id],
            queue=queue,
            task_id=task_id,
            retry=False,
            ignore_result=True,
        )
    except Exception as exc:
        raise QueueUnavailable(_redis_down_message(settings.redis_url, exc)) from exc
    job.celery_task_id, job.queue = task_id, queue
    job.progress = {**(job.progress or {}), "dispatched_at": utcnow().isoformat()}
    session.commit()


def _ping_redis(url: str) -> None:
    import redis

    try:
        redis.Redis.from_url(url, socket_connect_timeout=2, socket_timeout=2).ping()
    except Exception as exc:
        raise QueueUnavailable(_redis_down_message(url, exc)) from exc


def _redis_down_message(url: str, exc: Exception) -> str:
    from urllib.parse import urlsplit

    where = urlsplit(url)
    return (
        f"the training queue (Redis at {where.hostname}:{where.port or 6379}) is unreachable, so no job "
        f"was started ({type(exc).__name__}). Labeling and predictions keep working; try again once Redis "
        "is back."
    )


def _lock_jobs(session: Session) -> None:
    """Serialise job creation and claims: only one transaction at a time gets past this line."""
    session.commit()
    if session.get_bind().dialect.name == "postgresql":
        session.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": _JOB_LOCK_KEY})
    else:  # SQLite: a write statement takes the database write lock until commit/rollback.
        session.execute(text("UPDATE training_jobs SET id = id WHERE 1 = 0"))


def _require_labels(session: Session) -> None:
    from app.services.labels import consensus_labels

    present = {int(v) for labels in consensus_labels(session).values() for v in np.unique(labels) if v >= 0}
    if present != {0, 1}:
        have = ", ".join("healthy" if c == 0 else "diseased" for c in sorted(present)) or "no"
        raise NotEnoughLabels(
            f"Label at least one healthy and one diseased patch before training (there are {have} labels)."
        )


# --------------------------------------------------------------------------------------- liveness


def reap_stale_jobs(
    session: Session,
    *,
    settings: Settings | None = None,
    now: datetime | None = None,
    stale_after_s: float | None = None,
) -> list[int]:
    """Re-queue (until job_max_attempts) or fail running jobs whose heartbeat stopped."""
    settings = settings or get_settings()
    now = now or utcnow()
    cutoff = now - timedelta(seconds=settings.job_stale_after_s if stale_after_s is None else stale_after_s)
    max_attempts = settings.job_max_attempts
    stale = list(
        session.scalars(
            select(TrainingJob).where(
                TrainingJob.status == "running",
                func.coalesce(TrainingJob.heartbeat_at, TrainingJob.started_at) < cutoff,
            )
        )
    )
    requeued = []
    for job in stale:
        beat = job.heartbeat_at or job.started_at
        lost = f"worker {job.worker_host or '?'} stopped responding (last heartbeat {beat:%Y-%m-%d %H:%M:%S})"
        result = session.execute(
            update(TrainingJob)
            .where(
                TrainingJob.id == job.id,
                TrainingJob.status == "running",
                TrainingJob.attempts == job.attempts,
            )
            .values(
                status="queued" if job.attempts < max_attempts else "failed",
                error=f"{lost}; retrying (attempt {job.attempts + 1} of {max_attempts})"
                if job.attempts < max_attempts
                else f"{lost}; gave up after {job.attempts} attempts",
                finished_at=None if job.attempts < max_attempts else now,
            )
        )
        if result.rowcount and job.attempts < max_attempts:
            requeued.append(job.id)
        log.warning("training job %s: %s", job.id, lost)
    session.commit()
    if requeued:
        for job_id in requeued:
            job = session.get(TrainingJob, job_id, populate_existing=True)
            try:
                dispatch(session, job, settings)
            except QueueUnavailable as exc:  # the next reap, or the next worker start, retries it
                log.warning("could not re-dispatch job %s: %s", job_id, exc.message)
    return requeued


def redispatch_waiting(session: Session, settings: Settings, older_than_s: float = 60.0) -> list[int]:
    """Re-send queued jobs that no worker picked up (a lost message, a job queued behind another)."""
    if not settings.redis_url or session.scalar(
        select(func.count()).select_from(TrainingJob).where(TrainingJob.status == "running")
    ):
        return []
    job = session.scalars(
        select(TrainingJob).where(TrainingJob.status == "queued").order_by(TrainingJob.id)
    ).first()
    if job is None:
        return []
    sent = (job.progress or {}).get("dispatched_at")
    if sent and datetime.fromisoformat(sent) > utcnow() - timedelta(seconds=older_than_s):
        return []
    dispatch(session, job, settings)
    return [job.id]


def maybe_auto_retrain(session: Session, settings: Settings | None = None) -> TrainingJob | None:
    """Queue a job when N labels arrived since the last job's snapshot and labeling has paused."""
    settings = settings or get_settings()
    n = settings.auto_retrain_after_labels
    if n <= 0:
        return None
    if session.scalar(
        select(func.count()).select_from(TrainingJob).where(TrainingJob.status.in_(ACTIVE_STATUSES))
    ):
        return None
    last = session.scalars(
        select(TrainingJob).where(TrainingJob.label_snapshot.is_not(None)).order_by(TrainingJob.id.desc())
    ).first()
    since = (last.label_snapshot or {}).get("max_label_id", 0) if last else 0
    new, newest = session.execute(
        select(func.count(PatchLabel.id), func.max(PatchLabel.created_at)).where(PatchLabel.id > since)
    ).one()
    if new < n or newest is None or newest > utcnow() - timedelta(seconds=settings.auto_retrain_quiet_s):
        return None
    try:
        job = create_job(
            session,
            JobRequest(preset=settings.default_preset),
            user_id=None,
            trigger="auto",
            settings=settings,
        )
    except (JobConflict, NotEnoughLabels, QueueUnavailable) as exc:
        log.info("automatic retraining not started: %s", exc)
        return None
    log.info("automatic retraining: %d new labels since label %d -> job %d", new, since, job.id)
    return job


def housekeeping(session_factory: sessionmaker[Session], settings: Settings) -> None:
    """What every worker does every few seconds: reap dead jobs, re-send lost ones, auto-retrain."""
    with session_factory() as session:
        try:
            reap_stale_jobs(session, settings=settings)
            redispatch_waiting(session, settings)
            maybe_auto_retrain(session, settings)
        except Exception as exc:  # never let housekeeping kill a worker; say why and try next tick
            session.rollback()
            log.warning(
                "job housekeeping failed (%s: %s)", type(exc).__name__, str(exc).splitlines()[0][:300]
            )


# --------------------------------------------------------------------------------------- running


def worker_identity(device: str) -> tuple[str, str]:
    return f"{socket.gethostname()}:{os.getpid()}", device


def claim_job(session: Session, job_id: int, *, host: str, device: str) -> TrainingJob | None:
    """queued -> running for this worker, or None when the job is not ours to run (idempotence).

    A job stays queued while another job runs (jobs sent with queue=true run one after another).
    """
    _lock_jobs(session)
    job = session.get(TrainingJob, job_id, populate_existing=True)
    if job is None or job.status != "queued" or job.cancel_requested:
        session.rollback()
        return None
    produced = session.scalar(select(ModelVersion.id).where(ModelVersion.training_job_id == job_id).limit(1))
    if produced is not None:  # registered, then the worker died before it wrote "succeeded"
        job.status, job.model_version_id, job.finished_at = "succeeded", produced, job.finished_at or utcnow()
        session.commit()
        return None
    running = session.scalar(
        select(func.count())
        .select_from(TrainingJob)
        .where(TrainingJob.status == "running", TrainingJob.id != job_id)
    )
    if running:
        session.rollback()
        return None
    now = utcnow()
    job.status, job.attempts = "running", job.attempts + 1
    job.worker_host, job.worker_device = host, device
    job.started_at = job.heartbeat_at = now
    job.label_snapshot = snapshot_labels(session)
    job.progress = {"message": f"started on {host} ({device})"}
    session.commit()
    return job


def snapshot_labels(session: Session) -> dict[str, Any]:
    """The labels in effect now, by id (what the job trains on; see labels.label_snapshot)."""
    from app.services.labels import label_snapshot

    return label_snapshot(session)


@dataclass
class JobData:
    train: Any  # ml.train.loop.TrainData
    val_image_ids: list[int]
    summary: dict[str, Any]


def load_job_data(session: Session, snapshot: dict[str, Any], seed: int) -> JobData:
    """Labeled images from the snapshot (a quarter held out for validation) + every other image.

    Validation images are whole images, so no patch of theirs is seen in training, not even as an
    unlabeled patch. The image-level label of a validation image is derived from its patch labels
    (DR when any labeled patch is diseased): the database keeps no separate image label.
    """
    from app.services.labels import consensus_labels
    from ml.data.patches import patches_from_bytes
    from ml.train.loop import TrainData

    labels = consensus_labels(session, max_label_id=snapshot["max_label_id"])
    labels = {i: a for i, a in labels.items() if (a >= 0).any()}
    image_ids = list(session.scalars(select(Image.id).where(Image.deleted_at.is_(None)).order_by(Image.id)))
    labeled = [i for i in image_ids if i in labels]
    digests = dict(session.execute(select(Image.id, Image.sha256).where(Image.id.in_(labeled))).all())
    val_ids, how = _pick_validation(labeled, labels, digests, seed)
    train_ids = [i for i in image_ids if i not in set(val_ids)]

    def load(ids: list[int]) -> np.ndarray:
        blobs = dict(session.execute(select(Image.id, Image.patches).where(Image.id.in_(ids))).all())
        return (
            np.stack([patches_from_bytes(blobs[i]) for i in ids])
            if ids
            else np.zeros((0, 64, 3, 32, 32), np.uint8)
        )

    patches = load(train_ids)
    patch_labels = np.stack([labels.get(i, np.full(64, -1, np.int8)) for i in train_ids]).astype(np.int8)
    val = {}
    if val_ids:
        val_labels = np.stack([labels[i] for i in val_ids]).astype(np.int8)
        val = dict(
            val_patches=load(val_ids),
            val_patch_labels=val_labels,
            val_image_labels=(val_labels == 1).any(axis=1).astype(np.int8),
        )
    data = TrainData(patches=patches, patch_labels=patch_labels, image_ids=[str(i) for i in train_ids], **val)
    summary = {
        **data.summary(),
        "val_image_ids": val_ids,
        "val_split": how,
        "label_snapshot_max_id": snapshot["max_label_id"],
        "n_snapshot_labels": len(snapshot["label_ids"]),
    }
    summary.pop("image_ids", None)
    return JobData(train=data, val_image_ids=val_ids, summary=summary)


def _pick_validation(
    labeled: list[int], labels: dict[int, np.ndarray], digests: dict[int, str], seed: int
) -> tuple[list[int], str]:
    """Validation images: a quarter of the labeled ones, the *same* images in every job.

    An image is a validation image when its SHA-256 falls in the first of four buckets, so a
    version's validation images were never training images of an earlier version: comparing the
    active model with a new one on them (the ``if_not_worse`` policy) is fair. While that rule
    leaves a side of the split without both classes (few labels yet), a seeded random quarter
    with both classes on each side is used instead, and the summary says so.
    """
    if len(labeled) < 2:
        return [], "none"

    def both_classes(ids: list[int]) -> bool:
        return bool(ids) and {0, 1} <= set(np.concatenate([labels[i] for i in ids]).tolist())

    stable = sorted(i for i in labeled if int(digests[i][:8], 16) % 4 == 0)
    rest = [i for i in labeled if i not in set(stable)]
    if both_classes(stable) and both_classes(rest):
        return stable, "stable"
    n_val = max(1, round(VAL_FRACTION * len(labeled)))
    rng = np.random.default_rng(seed)
    for _ in range(50):
        order = [int(i) for i in rng.permutation(labeled)]
        if both_classes(order[:n_val]) and both_classes(order[n_val:]):
            return sorted(order[:n_val]), "random"
    return sorted(int(i) for i in rng.permutation(labeled)[:n_val]), "random"


class JobMonitor:
    """A thread that keeps the job row alive while training runs in the caller's thread.

    The training loop never touches the database: ``on_progress`` only stores the latest figures,
    and this thread writes them with the heartbeat every ``interval`` s and reads the cancel flag,
    which ``should_stop`` then answers from memory on every iteration at no cost.
    """

    def __init__(
        self, session_factory: sessionmaker[Session], job_id: int, attempt: int, interval: float = 2.0
    ) -> None:
        self.session_factory, self.job_id, self.attempt = session_factory, job_id, attempt
        self.interval = interval
        self.stop = threading.Event()
        self.cancel = threading.Event()
        self.lost = threading.Event()
        self.latest: dict[str, Any] | None = None
        self._thread = threading.Thread(target=self._run, name=f"job-{job_id}-monitor", daemon=True)

    def __enter__(self) -> JobMonitor:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop.set()
        self._thread.join(timeout=30)

    def on_progress(self, progress: Any) -> None:
        d = progress.to_dict() if hasattr(progress, "to_dict") else dict(progress)
        latest = {k: (None if isinstance(v, float) and not math.isfinite(v) else v) for k, v in d.items()}
        for key in ("val_patch_auc", "val_image_auc"):  # validation runs every few epochs: keep the last
            if latest.get(key) is None and self.latest is not None:
                latest[key] = self.latest.get(key)
        self.latest = latest

    def should_stop(self) -> bool:
        return self.cancel.is_set() or self.lost.is_set() or SHUTDOWN.is_set()

    def _run(self) -> None:
        while not self.stop.wait(self.interval):
            try:
                self.beat()
            except Exception:  # a database hiccup: the next beat retries; the staleness limit has margin
                log.exception("heartbeat of job %s failed", self.job_id)

    def beat(self) -> None:
        values: dict[str, Any] = {"heartbeat_at": utcnow()}
        if self.latest is not None:
            values["progress"] = {**self.latest, "message": "training"}
        with self.session_factory() as session:
            done = session.execute(
                update(TrainingJob)
                .where(
                    TrainingJob.id == self.job_id,
                    TrainingJob.status == "running",
                    TrainingJob.attempts == self.attempt,
                )
                .values(**values)
            ).rowcount
            cancel = session.scalar(select(TrainingJob.cancel_requested).where(TrainingJob.id == self.job_id))
            session.commit()
        if not done:
            self.lost.set()  # reaped as dead or taken over: stop wasting the device
        if cancel:
            self.cancel.set()


def _finish(session_factory: sessionmaker[Session], job_id: int, attempt: int, **values: Any) -> bool:
    """Write a final state, fenced on our attempt; False when the job is no longer ours."""
    values.setdefault("finished_at", utcnow())
    with session_factory() as session:
        done = session.execute(
            update(TrainingJob)
            .where(TrainingJob.id == job_id, TrainingJob.status == "running", TrainingJob.attempts == attempt)
            .values(**values)
        ).rowcount
        session.commit()
    return bool(done)


def run_job(
    job_id: int,
    session_factory: sessionmaker[Session],
    *,
    device: str | None = None,
    settings: Settings | None = None,
) -> str:
    """The whole life of one job on this worker; returns its final status (or ``skipped``).

    Shared verbatim by the Celery task and the embedded local worker.
    """
    from ml.train.loop import TrainingCancelled, resolve_device

    settings = settings or get_settings()
    dev = resolve_device(device or settings.device)
    host, dev_name = worker_identity(_device_name(dev))
    with session_factory() as session:
        job = claim_job(session, job_id, host=host, device=dev_name)
        if job is None:
            return "skipped"
        attempt, snapshot = job.attempts, dict(job.label_snapshot)
        request = JobRequest(
            job.method, job.preset, job.epochs, job.seed, dict(job.params.get("train_overrides", {}))
        )
    log.info(
        "training job %d: attempt %d on %s (%s), %d labels",
        job_id,
        attempt,
        host,
        dev_name,
        len(snapshot["label_ids"]),
    )
    monitor = JobMonitor(session_factory, job_id, attempt, settings.job_heartbeat_s)
    try:
        with session_factory() as session:
            data = load_job_data(session, snapshot, seed=request.seed or 0)
        with monitor:
            result = _train(request, data, dev, monitor)
            monitor.latest = {**(monitor.latest or {}), "message": "evaluating and registering the model"}
            monitor.beat()
        with session_factory() as session:
            version, activated, reason = register_result(
                session, job_id, attempt, request, result, data, settings
            )
        return "succeeded" if version else "skipped"
    except TrainingCancelled as exc:
        if monitor.lost.is_set():
            return "skipped"
        if SHUTDOWN.is_set() and not monitor.cancel.is_set():
            _finish(
                session_factory,
                job_id,
                attempt,
                status="queued",
                finished_at=None,
                attempts=attempt - 1,
                worker_host=None,
                progress={
                    "message": f"worker {host} shut down at epoch {exc.epoch}; "
                    "the job starts again on the next worker",
                    "dispatched_at": None,
                },
            )
            return "requeued"
        _finish(
            session_factory,
            job_id,
            attempt,
            status="cancelled",
            progress={
                **(monitor.latest or {}),
                "message": f"cancelled: stopped at epoch {exc.epoch}, "
                f"iteration {exc.iteration}; no model was produced",
            },
        )
        return "cancelled"
    except Exception as exc:
        log.exception("training job %d failed", job_id)
        _finish(
            session_factory,
            job_id,
            attempt,
            status="failed",
            error=f"{type(exc).__name__}: {exc}"[:4000],
            progress={**(monitor.latest or {}), "message": "failed; the active model was not changed"},
        )
        return "failed"


def _device_name(dev: Any) -> str:
    if dev.type == "cuda":
        import torch

        return f"cuda:{dev.index or 0} ({torch.cuda.get_device_name(dev.index or 0)})"
    return str(dev)


def _train(request: JobRequest, data: JobData, dev: Any, monitor: JobMonitor) -> Any:
    from ml.train.config import preset

    overrides = dict(request.train_overrides)
    if request.epochs:
        overrides["epochs"] = request.epochs
    if request.seed is not None:
        overrides["seed"] = request.seed
    model_cfg, train_cfg = preset(request.preset, **overrides)
    if request.method == "ssl_gan":
        from ml.train.ssl_gan import train
    else:
        from ml.train.supervised import train as supervised_train

        def train(*args, **kwargs):
            return supervised_train(*args, method=request.method, **kwargs)

    return train(
        data.train,
        train_cfg,
        model_cfg=model_cfg,
        device=dev,
        on_progress=monitor.on_progress,
        should_stop=monitor.should_stop,
    )


def evaluate_checkpoint(checkpoint: bytes, data: JobData) -> dict[str, Any]:
    """Patch AUC (and the derived image AUC) of a checkpoint on the held-out labeled images."""
    from ml.eval.metrics import auc, image_scores, patch_auc
    from ml.predict import Predictor

    train = data.train
    if train.val_patches is None or not len(train.val_patches):
        return {"val_patch_auc": None, "val_image_auc": None, "n_val_images": 0}
    logits = Predictor.from_checkpoint(checkpoint).patch_logits(train.val_patches)
    return {
        "val_patch_auc": _finite(patch_auc(logits, train.val_patch_labels)),
        "val_image_auc": _finite(auc(train.val_image_labels, image_scores(logits))),
        "n_val_images": int(len(train.val_patches)),
        "n_val_labeled_patches": int((train.val_patch_labels >= 0).sum()),
        "roc": _patch_roc(logits, train.val_patch_labels),
    }


def _patch_roc(logits: Any, labels: Any, max_points: int = 101) -> dict[str, list[float]] | None:
    """The validation patch ROC curve for the models page (thinned to ``max_points``), or None."""
    from ml.eval.metrics import roc

    y = np.asarray(labels).ravel()
    keep = y >= 0
    if len(set(y[keep].tolist())) < 2:
        return None
    fpr, tpr = roc(y[keep], np.asarray(logits).ravel()[keep])
    idx = np.unique(np.linspace(0, len(fpr) - 1, min(max_points, len(fpr))).round().astype(int))
    return {"fpr": [round(float(v), 4) for v in fpr[idx]], "tpr": [round(float(v), 4) for v in tpr[idx]]}


def _finite(x: float | None) -> float | None:
    return None if x is None or not math.isfinite(float(x)) else float(x)


def register_result(
    session: Session,
    job_id: int,
    attempt: int,
    request: JobRequest,
    result: Any,
    data: JobData,
    settings: Settings,
) -> tuple[ModelVersion | None, bool, str]:
    """Checkpoint -> evaluation -> immutable version -> activation by policy -> job succeeded.

    The checkpoint is loaded back from its bytes and evaluated before anything is registered, so a
    version that cannot serve never exists. Activation verifies the checkpoint once more; when it
    is refused the previous model keeps serving and the job says why.
    """
    from app.services import models as registry
    from ml import checkpoint as ckpt

    blob = ckpt.save(result)
    metrics = {
        **evaluate_checkpoint(blob, data),
        **{f"selection_{k}": v for k, v in (result.val_metrics or {}).items()},
    }
    active = registry.active_version(session)
    baseline = _active_baseline(session, active, data)
    metrics["active_version"] = active.version if active else None
    metrics["active_val_patch_auc"] = baseline
    activate, reason = decide_activation(
        settings.activation_policy, metrics.get("val_patch_auc"), active, baseline
    )

    job = session.get(TrainingJob, job_id, populate_existing=True)
    if job is None or job.status != "running" or job.attempts != attempt:
        session.rollback()
        log.warning("job %d was taken from this worker; its result is discarded", job_id)
        return None, False, "job no longer ours"
    requester = session.get(User, job.requested_by_id) if job.requested_by_id else None
    progress, label_ids = dict(job.progress or {}), list(job.label_snapshot["label_ids"])
    version = registry.register_model_version(
        session,
        blob,
        method=request.method,
        preset=request.preset,
        threshold=float(result.threshold),
        metrics=metrics,
        training_summary={
            **data.summary,
            "label_ids": label_ids,
            "threshold_source": result.threshold_source,
            "device": result.device,
            "epochs_run": result.epochs_run,
            "best_epoch": result.best_epoch,
            "wall_s": round(result.wall_s, 2),
        },
        training_job_id=job_id,
        created_by=requester,
    )
    if activate:
        try:
            registry.activate(session, version.version, requester)
        except ServiceError as exc:
            activate, reason = False, f"not activated: {exc.message}"
    # One commit makes the job succeed with its version and the activation outcome. Should this
    # worker die before it, the version row (training_job_id) lets the next claim finish the job
    # without training it again (see claim_job).
    done = session.execute(
        update(TrainingJob)
        .where(TrainingJob.id == job_id, TrainingJob.status == "running", TrainingJob.attempts == attempt)
        .values(
            status="succeeded",
            finished_at=utcnow(),
            model_version_id=version.id,
            progress={
                **progress,
                "message": f"model version {version.version} registered; {reason}",
                "activated": activate,
            },
        )
    ).rowcount
    session.commit()
    if not done:
        log.warning("job %d was reaped while registering version %d", job_id, version.version)
    return version, activate, reason


def _active_baseline(session: Session, active: ModelVersion | None, data: JobData) -> float | None:
    """The active model's AUC on *this* job's validation images (a like-for-like comparison)."""
    if active is None:
        return None
    try:
        return evaluate_checkpoint(active.checkpoint, data)["val_patch_auc"]
    except Exception as exc:
        log.warning("active model %s could not be evaluated: %s", active.version, exc)
        return None


def decide_activation(
    policy: str, new_auc: float | None, active: ModelVersion | None, active_auc: float | None
) -> tuple[bool, str]:
    if policy == "manual":
        return False, "not activated (policy: manual; an admin activates it)"
    if policy == "always" or active is None:
        return True, "activated" + (" (policy: always)" if active is not None else " (first model)")
    if new_auc is None:
        return False, "not activated: no validation AUC to compare (label patches on more images)"
    if active_auc is None or new_auc >= active_auc:
        return True, f"activated: validation AUC {new_auc:.3f} is not worse than the active model's" + (
            f" {active_auc:.3f}" if active_auc is not None else ""
        )
    return (
        False,
        f"not activated: validation AUC {new_auc:.3f} is worse than the active model's {active_auc:.3f}",
    )
