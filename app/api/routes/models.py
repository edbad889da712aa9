"""Model versions: list, inspect, activate (admin)."""

from __future__ import annotations

from fastapi import APIRouter
from starlette.concurrency import run_in_threadpool

from app.api.deps import AdminUser, CurrentUser, SessionDep
from app.api.schemas import ModelOut
from app.db.models import ModelVersion
from app.services import models

router = APIRouter(prefix="/models", tags=["models"])


def model_out(mv: ModelVersion, active_id: int | None) -> ModelOut:
    return ModelOut(
        version=mv.version,
        method=mv.method,
        preset=mv.preset,
        threshold=mv.threshold,
        metrics=mv.metrics or {},
        training_summary=mv.training_summary or {},
        network=mv.network_config,
        training_job_id=mv.training_job_id,
        checkpoint_sha256=mv.checkpoint_sha256,
        checkpoint_size=mv.checkpoint_size,
        created_at=mv.created_at,
        active=mv.id == active_id,
    )


@router.get("", response_model=list[ModelOut])
def list_models(_: CurrentUser, session: SessionDep) -> list[ModelOut]:
    """Every registered version, newest first, with which one is active."""
    active = models.active_version(session)
    return [model_out(mv, active.id if active else None) for mv in models.list_versions(session)]


@router.get("/{version}", response_model=ModelOut)
def get_model(version: int, _: CurrentUser, session: SessionDep) -> ModelOut:
    """Metrics, threshold and the training data counts of one version."""
    active = models.active_version(session)
    return model_out(models.get_version(session, version), active.id if active else None)


@router.post("/{version}/activate", response_model=ModelOut)
async def activate(version: int, admin: AdminUser, session: SessionDep) -> ModelOut:
    """Serve predictions from this version (atomic; refused, 409, when its checkpoint does not load)."""
    mv = await run_in_threadpool(models.activate, session, version, admin)
    return model_out(mv, mv.id)
