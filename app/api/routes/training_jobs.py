"""Training jobs: start (admin), list, inspect, cancel (admin). The work happens in a worker."""

from __future__ import annotations

import logging
from datetime import datetime
from typing import Any, Literal

from fastapi import APIRouter, Query, status
from pydantic import BaseModel, Field
from sqlalchemy import or_, select

from app.api.deps import AdminUser, CurrentUser, SessionDep, SettingsDep
from app.db.models import ModelVersion, TrainingJob, User
from app.services import training

log = logging.getLogger("patchscreen.api")
router = APIRouter(prefix="/training-jobs", tags=["training"])


class JobIn(BaseModel):
    method: Literal["ssl_gan", "convnet", "resnet34"] = "ssl_gan"
    preset: Literal["tiny", "small", "full"] | None = Field(
        None,
        description="small trains in minutes on a CPU; full is the published model (GPU). Default: the "
        "site's PATCHSCREEN_DEFAULT_PRESET.",
    )
    epochs: int | None = Field(None, ge=1, le=10_000, description="Override the preset's number of epochs.")
    seed: int | None = Field(None, ge=0, le=2**31 - 1)
    queue: bool = Field(False, description="Run after the current job instead of answering 409.")


class JobOut(BaseModel):
    id: int
    status: str
    method: str
    preset: str
    epochs: int | None
    seed: int | None
    trigger: str
    requested_by: str | None
    progress: dict[str, Any]
    labels: dict[str, Any] | None = Field(
        description="The label snapshot the job trains on (counts, cut-off)."
    )
    queue: str | None
    worker_host: str | None
    worker_device: str | None
    attempts: int
    cancel_requested: bool
    error: str | None
    model_version: int | None
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    heartbeat_at: datetime | None


def job_out(session, job: TrainingJob) -> JobOut:
    snap = job.label_snapshot
    labels = (
        None
        if snap is None
        else {k: v for k, v in snap.items() if k != "label_ids"}
        | {"n_labels": len(snap.get("label_ids", []))}
    )
    # The version row names its job from the commit that made the job succeed (the job's own
    # pointer follows a moment later, after activation), so look it up from that side.
    version = session.scalar(
        select(ModelVersion.version)
        .where(or_(ModelVersion.id == job.model_version_id, ModelVersion.training_job_id == job.id))
        .order_by(ModelVersion.id.desc())
        .limit(1)
    )
    requester = session.scalar(select(User.username).where(User.id == job.requested_by_id))
    return JobOut(
        id=job.id,
        status=job.status,
        method=job.method,
        preset=job.preset,
        epochs=job.epochs,
        seed=job.seed,
        trigger=job.trigger,
        requested_by=requester,
        progress=job.progress or {},
        labels=labels,
        queue=job.queue,
        worker_host=job.worker_host,
        worker_device=job.worker_device,
        attempts=job.attempts,
        cancel_requested=job.cancel_requested,
        error=job.error,
        model_version=version,
        created_at=job.created_at,
        started_at=job.started_at,
        finished_at=job.finished_at,
        heartbeat_at=job.heartbeat_at,
    )


def _reap(session, settings) -> None:
    """Listing jobs also fails or re-queues dead ones, so a stale "running" never outlives its worker."""
    try:
        training.reap_stale_jobs(session, settings=settings)
    except Exception as exc:  # a busy database must not break reading the list
        session.rollback()
        log.warning("could not check for stale training jobs: %s", exc)


@router.post("", status_code=status.HTTP_202_ACCEPTED, response_model=JobOut)
def start_job(body: JobIn, admin: AdminUser, session: SessionDep, settings: SettingsDep) -> JobOut:
    """Queue a training run; 409 with the current job's id while one is queued or running (unless
    ``queue`` is true), 503 when the training queue (Redis) is unreachable."""
    request = training.JobRequest(body.method, body.preset or settings.default_preset, body.epochs, body.seed)
    job = training.create_job(session, request, user_id=admin.id, queue=body.queue, settings=settings)
    return job_out(session, job)


@router.get("", response_model=list[JobOut])
def list_jobs(
    _: CurrentUser,
    session: SessionDep,
    settings: SettingsDep,
    limit: int = Query(50, ge=1, le=500),
    offset: int = Query(0, ge=0),
) -> list[JobOut]:
    """Jobs, newest first, with their progress."""
    _reap(session, settings)
    return [job_out(session, j) for j in training.list_jobs(session, limit=limit, offset=offset)]


@router.get("/{job_id}", response_model=JobOut)
def get_job(job_id: int, _: CurrentUser, session: SessionDep, settings: SettingsDep) -> JobOut:
    """One job: status, progress (epoch of total, it/s, losses, validation AUC, time left), worker."""
    _reap(session, settings)
    return job_out(session, training.get_job(session, job_id))


@router.delete("/{job_id}", response_model=JobOut)
def cancel_job(job_id: int, admin: AdminUser, session: SessionDep) -> JobOut:
    """Cancel: a queued job at once; a running one stops at its next iteration (status follows)."""
    return job_out(session, training.cancel_job(session, job_id, user_id=admin.id))
