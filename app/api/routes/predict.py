"""/predict and the stored predictions' heatmaps."""

from __future__ import annotations

import asyncio
import json
import time

from fastapi import APIRouter, Query, Request, Response
from pydantic import ValidationError
from starlette.concurrency import run_in_threadpool

from app.api.deps import CurrentUser, SessionDep, SettingsDep, StorageDep
from app.api.schemas import PredictByImage, PredictionOut
from app.api.uploads import is_multipart, read_multipart
from app.db.models import ModelVersion, Prediction
from app.services import metrics, predictions
from app.services.errors import Invalid, UnsupportedMedia

router = APIRouter(tags=["predict"])

_PREDICT_BODY = {
    "requestBody": {
        "required": True,
        "content": {
            "multipart/form-data": {
                "schema": {
                    "type": "object",
                    "required": ["file"],
                    "properties": {
                        "file": {"type": "string", "format": "binary"},
                        "store": {"type": "boolean", "description": "Also add the image to the library."},
                    },
                }
            },
            "application/json": {"schema": PredictByImage.model_json_schema()},
        },
    }
}


def prediction_out(
    row: Prediction, version: int, model_seconds: float | None = None, batch_size: int | None = None
) -> PredictionOut:
    return PredictionOut(
        id=row.id,
        model_version=version,
        score=row.score,
        threshold=row.threshold,
        diseased=row.diseased,
        patch_probabilities=predictions.probability_grid(row),
        heatmap_url=f"/api/v1/predictions/{row.id}/heatmap.png",
        image_id=row.image_id,
        created_at=row.created_at,
        model_seconds=model_seconds,
        batch_size=batch_size,
    )


def _truthy(value: str | None) -> bool:
    return (value or "").strip().lower() in {"1", "true", "yes", "on"}


@router.post("/predict", response_model=PredictionOut, openapi_extra=_PREDICT_BODY)
async def predict(
    request: Request,
    user: CurrentUser,
    session: SessionDep,
    settings: SettingsDep,
    storage: StorageDep,
    store: bool | None = Query(None),
) -> PredictionOut:
    """Score an image: a multipart ``file`` (not stored unless ``store=true``) or JSON ``{"image_id"}``.

    Answers 409 with advice while no model is active. Every prediction is kept for audit."""
    start = time.perf_counter()
    if is_multipart(request):
        form = await read_multipart(request, max_file_bytes=settings.max_upload_bytes, max_files=1)
        files = [f for f in form.files if f.field == "file"] or form.files
        if not files:
            raise Invalid('No file in the request: send the image as the multipart field "file".')
        keep = store if store is not None else _truthy(form.fields.get("store"))
        if keep and user.role == "viewer":
            from app.services.errors import Forbidden

            raise Forbidden("Storing images needs the annotator or admin role; predict without store=true.")
        upload = files[0]
        prep = await run_in_threadpool(
            predictions.prepare_for_upload,
            session,
            storage,
            settings,
            bytes(upload.data),
            upload.filename,
            user,
            store=keep,
        )
    elif request.headers.get("content-type", "").lower().startswith("application/json"):
        try:
            body = PredictByImage.model_validate(json.loads(await request.body()))
        except (ValueError, ValidationError) as exc:
            raise Invalid(
                f'The JSON body must be {{"image_id": <int>}} ({exc.__class__.__name__}).'
            ) from None
        prep = await run_in_threadpool(predictions.prepare_for_image, session, body.image_id)
    else:
        raise UnsupportedMedia('Send a multipart/form-data "file" or a JSON body {"image_id": ...}.')

    result = await asyncio.wrap_future(request.app.state.batcher.submit(prep.predictor, prep.patches))
    latency_ms = (time.perf_counter() - start) * 1000
    row = await run_in_threadpool(predictions.record, session, prep, result.prediction, user, latency_ms)
    metrics.PREDICTIONS.labels(str(prep.model.version), "diseased" if row.diseased else "healthy").inc()
    return prediction_out(row, prep.model.version, result.model_seconds, result.batch_size)


@router.get("/predictions/{prediction_id}", response_model=PredictionOut)
def get_prediction(prediction_id: int, _: CurrentUser, session: SessionDep) -> PredictionOut:
    row = predictions.get_prediction(session, prediction_id)
    return prediction_out(row, session.get(ModelVersion, row.model_version_id).version)


@router.get(
    "/predictions/{prediction_id}/heatmap.png",
    response_class=Response,
    responses={200: {"content": {"image/png": {}}}},
)
def heatmap(
    prediction_id: int,
    _: CurrentUser,
    session: SessionDep,
    storage: StorageDep,
    overlay: bool = True,
    alpha: float = Query(0.45, ge=0.0, le=1.0),
) -> Response:
    """The blurred, colour-mapped heatmap over the image (or alone with ``overlay=false``)."""
    row = predictions.get_prediction(session, prediction_id)
    png = predictions.heatmap_png(session, storage, row, overlay=overlay, alpha=alpha)
    return Response(png, media_type="image/png", headers={"Cache-Control": "private, max-age=86400"})
