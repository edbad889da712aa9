"""Suggested next patches: where one more label teaches the active model the most.

Uncertainty sampling. For every patch of the library the active model gives p = p(diseased); the
binary entropy H(p) = -p log2 p - (1 - p) log2(1 - p) is 1 bit where the model cannot tell (p = 0.5)
and 0 where it is sure. Patches that anyone has labeled are left out (their label is known), the
rest are ranked by entropy, highest first, and the answer is recorded in ``suggestions`` (who was
offered what, from which model version, in which request) so that one can later measure whether
suggested patches were labeled and whether they helped.

Cost: the probabilities of an image depend only on its patches and the model version, so they are
taken from a stored prediction of that version when there is one, else computed once in batches and
kept in a bounded in-process cache. One request spends at most about ``compute_budget_s`` of model
time on images not scored yet (newest first) and ranks what is known; the answer says how many
images are still pending, and later requests cover them. Only the ``scan_limit`` most recently
uploaded images are considered.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from app.db.models import ActiveModel, Image, ModelVersion, PatchLabel, Prediction, Suggestion, User
from app.services.errors import Conflict, Invalid, NotFound

GRID = 8
N_PATCHES = GRID * GRID
MAX_N = 200
DEFAULT_SCAN_LIMIT = 1000
# Model time one request may spend on images never scored by this version (the full-size model takes
# about 0.39 s per image on a 2-core CPU, per issue 4); later requests carry on where this one stopped.
DEFAULT_COMPUTE_BUDGET_S = 3.0
BATCH_IMAGES = 8
CACHE_ENTRIES = 20_000

# (model version bytes) -> function from uint8 patches (B, 64, 3, r, r) to diseased logits (B, 64).
LogitsFn = Callable[[np.ndarray], np.ndarray]


@dataclass(frozen=True)
class SuggestedPatch:
    image_id: int
    row: int
    col: int
    probability: float
    entropy: float
    rank: int
    original_filename: str


@dataclass(frozen=True)
class SuggestionBatch:
    request_id: str
    model_version: int
    model_version_id: int
    scanned_images: int  # images whose patches were ranked
    pending_images: int  # images not scored yet by this version (covered by later requests)
    items: list[SuggestedPatch]


def binary_entropy(p: np.ndarray) -> np.ndarray:
    """Entropy in bits of a Bernoulli(p), 0 at p in {0, 1} (no NaN from 0 * log 0)."""
    p = np.clip(np.asarray(p, dtype=np.float64), 0.0, 1.0)
    with np.errstate(divide="ignore", invalid="ignore"):
        h = -(p * np.log2(p) + (1.0 - p) * np.log2(1.0 - p))
    return np.nan_to_num(h, nan=0.0)


# ---- probabilities per image, per model version ----

_cache: OrderedDict[tuple[int, int], np.ndarray] = OrderedDict()
_cache_lock = threading.Lock()


def _cached(key: tuple[int, int]) -> np.ndarray | None:
    with _cache_lock:
        probs = _cache.get(key)
        if probs is not None:
            _cache.move_to_end(key)
        return probs


def _remember(key: tuple[int, int], probs: np.ndarray) -> None:
    with _cache_lock:
        _cache[key] = probs
        _cache.move_to_end(key)
        while len(_cache) > CACHE_ENTRIES:
            _cache.popitem(last=False)


def clear_cache() -> None:
    with _cache_lock:
        _cache.clear()


def _default_logits_fn(session: Session, mv: ModelVersion) -> LogitsFn:
    """The active version's shared Predictor (the one /predict uses; loaded once, checksum-verified)."""
    from app.services.models import predictors

    return predictors.get(session, mv).patch_logits


def _stored_probabilities(session: Session, mv_id: int, image_ids: Sequence[int]) -> dict[int, np.ndarray]:
    """Probabilities of predictions already made by this version (the newest one per image)."""
    if not image_ids:
        return {}
    rows = session.execute(
        select(Prediction.image_id, Prediction.probabilities)
        .where(Prediction.model_version_id == mv_id, Prediction.image_id.in_(image_ids))
        .order_by(Prediction.id)
    )
    out: dict[int, np.ndarray] = {}
    for image_id, probs in rows:
        arr = np.asarray(probs, dtype=np.float32).reshape(-1)
        if arr.size == N_PATCHES:
            out[int(image_id)] = arr
    return out


def _image_probabilities(
    session: Session,
    mv: ModelVersion,
    image_ids: Sequence[int],
    logits_fn: LogitsFn | None,
    compute_budget_s: float | None = None,
) -> dict[int, np.ndarray]:
    """Probabilities of the images that have them, computing missing ones newest first.

    With ``compute_budget_s`` the model stops after the batch that crosses the budget: the answer
    then covers fewer images, and the next request (the cache remembers) covers more.
    """
    from ml.data.patches import patches_from_bytes
    from ml.eval.metrics import sigmoid

    out: dict[int, np.ndarray] = {}
    missing = []
    for i in image_ids:
        hit = _cached((mv.id, i))
        if hit is None:
            missing.append(i)
        else:
            out[i] = hit
    for i, probs in _stored_probabilities(session, mv.id, missing).items():
        out[i] = probs
        _remember((mv.id, i), probs)
    missing = [i for i in missing if i not in out]
    if missing and logits_fn is None:
        logits_fn = _default_logits_fn(session, mv)
    started = time.perf_counter()
    for start in range(0, len(missing), BATCH_IMAGES):
        if compute_budget_s is not None and start and time.perf_counter() - started > compute_budget_s:
            break
        chunk = missing[start : start + BATCH_IMAGES]
        rows = session.execute(select(Image.id, Image.patches).where(Image.id.in_(chunk))).all()
        if not rows:
            continue
        batch = np.stack([patches_from_bytes(blob) for _, blob in rows])
        logits = np.asarray(logits_fn(batch), dtype=np.float64).reshape(len(rows), N_PATCHES)
        probs = sigmoid(logits).astype(np.float32)
        for (image_id, _), p in zip(rows, probs, strict=True):
            out[int(image_id)] = p
            _remember((mv.id, int(image_id)), p)
    return out


# ---- which patches are labeled ----


def labeled_cells(session: Session, image_ids: Sequence[int]) -> set[tuple[int, int, int]]:
    """(image, row, col) of every patch whose current label, by any annotator, is set.

    The current label of an annotator is their latest row; a cleared label (NULL) makes the patch
    unlabeled again for that annotator.
    """
    if not image_ids:
        return set()
    latest = (
        select(func.max(PatchLabel.id).label("id"))
        .where(PatchLabel.image_id.in_(image_ids))
        .group_by(PatchLabel.image_id, PatchLabel.row, PatchLabel.col, PatchLabel.user_id)
        .subquery()
    )
    rows = session.execute(
        select(PatchLabel.image_id, PatchLabel.row, PatchLabel.col)
        .join(latest, PatchLabel.id == latest.c.id)
        .where(PatchLabel.label.is_not(None))
    )
    return {(int(i), int(r), int(c)) for i, r, c in rows}


# ---- the service ----


def active_version(session: Session) -> ModelVersion:
    mv = session.scalar(
        select(ModelVersion).join(ActiveModel, ActiveModel.model_version_id == ModelVersion.id)
    )
    if mv is None:
        raise Conflict(
            "No model is active yet, so there is nothing to suggest: label some patches and start a "
            "training job on the Training page (or POST /api/v1/training-jobs)."
        )
    return mv


def rank(
    session: Session,
    n: int = 12,
    *,
    image_id: int | None = None,
    scan_limit: int = DEFAULT_SCAN_LIMIT,
    compute_budget_s: float | None = DEFAULT_COMPUTE_BUDGET_S,
    logits_fn: LogitsFn | None = None,
) -> SuggestionBatch:
    """The ``n`` unlabeled patches with the highest entropy under the active model (reads only)."""
    if not 1 <= n <= MAX_N:
        raise Invalid(f"n must be between 1 and {MAX_N}.")
    mv = active_version(session)
    query = select(Image.id, Image.original_filename).where(Image.deleted_at.is_(None))
    if image_id is not None:
        if session.scalar(query.where(Image.id == image_id)) is None:
            raise NotFound(f"No image with id {image_id}.")
        query = query.where(Image.id == image_id)
    images = session.execute(query.order_by(Image.id.desc()).limit(scan_limit)).all()
    names = {int(i): name for i, name in images}
    ids = list(names)
    probs = _image_probabilities(session, mv, ids, logits_fn, compute_budget_s)
    labeled = labeled_cells(session, ids)

    candidates: list[tuple[float, int, int, float]] = []  # (-entropy, image, k, p)
    for i in ids:
        p = probs.get(i)
        if p is None:
            continue
        h = binary_entropy(p)
        for k in range(N_PATCHES):
            if (i, k // GRID, k % GRID) not in labeled:
                candidates.append((-round(float(h[k]), 9), i, k, float(p[k])))
    # Highest entropy first; ties (to 1e-9 bit) broken by image id then patch index, so repeatable.
    candidates.sort()
    items = [
        SuggestedPatch(
            image_id=i,
            row=k // GRID,
            col=k % GRID,
            probability=p,
            entropy=-neg_h,
            rank=r,
            original_filename=names[i],
        )
        for r, (neg_h, i, k, p) in enumerate(candidates[:n], start=1)
    ]
    return SuggestionBatch(
        request_id=str(uuid.uuid4()),
        model_version=mv.version,
        model_version_id=mv.id,
        scanned_images=len(probs),
        pending_images=len(ids) - len(probs),
        items=items,
    )


def record(session: Session, user: User, batch: SuggestionBatch) -> None:
    """Keep who was offered which patches, from which model, in which request (one transaction)."""
    session.add_all(
        Suggestion(
            user_id=user.id,
            image_id=s.image_id,
            row=s.row,
            col=s.col,
            rank=s.rank,
            probability=s.probability,
            entropy=s.entropy,
            model_version_id=batch.model_version_id,
            request_id=batch.request_id,
        )
        for s in batch.items
    )
    session.commit()


def suggest(session: Session, user: User, n: int = 12, **kwargs) -> SuggestionBatch:
    """``rank`` then ``record`` in the same session (for callers that hold a write session)."""
    batch = rank(session, n, **kwargs)
    record(session, user, batch)
    return batch
