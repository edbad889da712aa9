"""/predict: resolve the input and the active model, batch the forward pass, keep an audit record.

A request runs in three steps so that no database transaction stays open during the forward
pass (on SQLite that would hold a lock; on PostgreSQL a connection): ``prepare`` (read, validate,
decode, optionally store the upload) commits, the batcher runs the model, ``record`` writes the
audit row. Heatmaps are drawn only when their URL is fetched, not on the request path.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from sqlalchemy.orm import Session

from app.core.config import Settings
from app.db.models import ModelVersion, Prediction, User
from app.db.session import begin_read
from app.services import images, models
from app.services.errors import NotFound
from app.services.storage import Storage
from ml.data.patches import patches_from_bytes

GRID = 8


@dataclass
class PreparedPrediction:
    model: ModelVersion
    predictor: object
    patches: np.ndarray
    image_id: int | None = None
    upload_sha256: str | None = None
    upload_filename: str | None = None
    overlay_base: bytes | None = None
    stored_created: bool | None = None


def prepare_for_image(session: Session, image_id: int) -> PreparedPrediction:
    begin_read(session)  # SQLite: reading the patches does not take the write lock
    active = models.active_model(session)
    img = images.get_image(session, image_id)
    patches = patches_from_bytes(session.get(type(img), img.id).patches)  # deferred column
    session.commit()
    return PreparedPrediction(active.version, active.predictor, patches, image_id=img.id)


def prepare_for_upload(
    session: Session,
    storage: Storage,
    settings: Settings,
    data: bytes,
    filename: str | None,
    user: User,
    *,
    store: bool,
) -> PreparedPrediction:
    begin_read(session)
    active = models.active_model(session)  # 409 before any decoding or storing
    session.commit()  # no transaction (on SQLite: no write lock) while decoding
    prepared = images.prepare(data, filename, settings)
    if store:
        stored = images.store_prepared(session, storage, [prepared], user)[0]
        session.commit()
        return PreparedPrediction(
            active.version,
            active.predictor,
            prepared.patches,
            image_id=stored.image.id,
            stored_created=stored.created,
        )
    return PreparedPrediction(
        active.version,
        active.predictor,
        prepared.patches,
        upload_sha256=prepared.sha256,
        upload_filename=prepared.filename,
        overlay_base=images.overlay_base(prepared),
    )


def record(session: Session, prep: PreparedPrediction, result, user: User, latency_ms: float) -> Prediction:
    probs = np.asarray(result.probabilities, dtype=np.float64).reshape(GRID * GRID)
    score = float(result.score)
    threshold = float(prep.model.threshold)
    row = Prediction(
        user_id=user.id,
        model_version_id=prep.model.id,
        image_id=prep.image_id,
        upload_sha256=prep.upload_sha256,
        upload_filename=prep.upload_filename,
        score=score,
        threshold=threshold,
        diseased=bool(score >= threshold),
        probabilities=[float(p) for p in probs],
        overlay_base=prep.overlay_base,
        latency_ms=latency_ms,
    )
    session.add(row)
    session.commit()
    return row


def get_prediction(session: Session, prediction_id: int) -> Prediction:
    row = session.get(Prediction, prediction_id)
    if row is None:
        raise NotFound(f"No prediction with id {prediction_id}.")
    return row


def probability_grid(row: Prediction) -> list[list[float]]:
    p = list(row.probabilities)
    return [p[r * GRID : (r + 1) * GRID] for r in range(GRID)]


def _base_image(session: Session, storage: Storage, row: Prediction) -> np.ndarray:
    if row.image_id is not None:
        img = images.get_image(session, row.image_id, include_deleted=True)
        return images.grid_rgb(storage, img)
    base = session.get(Prediction, row.id).overlay_base
    if not base:
        raise NotFound(f"Prediction {row.id} has no image to draw its heatmap on; use ?overlay=false.")
    return images.overlay_rgb(base)


def heatmap_png(session: Session, storage: Storage, row: Prediction, *, overlay: bool, alpha: float) -> bytes:
    """The 8x8 probabilities upsampled to the image, Gaussian-blurred, colour-mapped (and blended)."""
    from ml import heatmap as hm

    probs = np.asarray(row.probabilities, dtype=np.float32).reshape(GRID, GRID)
    if overlay:
        base = _base_image(session, storage, row)
        heat = hm.heatmap(probs, base.shape[0])  # blur: ml.heatmap's default, a quarter patch
        rgb = hm.overlay(base, heat, alpha)
    else:
        rgb = hm.colormap(hm.heatmap(probs, 512))
    return images.encode_png(np.ascontiguousarray(rgb), compress_level=3)
