"""The model registry: immutable model versions, the one active model, and the loaded predictors.

- ``register_model_version`` stores the checkpoint bytes in the database (a worker on another
  host registers what it trained; the API host needs no shared disk). A version never changes.
- ``activate`` loads and checks the checkpoint first and only then points the single
  ``active_model`` row at it, in one transaction: a missing or corrupt checkpoint is refused with
  a clear error and the previous model keeps serving.
- ``active_predictor`` returns the predictor of the active version, loaded once per process and
  cached by version. Callers keep the object they got for the whole prediction, so a request in
  flight during an activation finishes on the model it started with.
"""

from __future__ import annotations

import hashlib
import threading
import warnings
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any

from sqlalchemy import func, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from app.db.base import utcnow
from app.db.models import ActiveModel, ModelVersion, User
from app.services.errors import Conflict, Invalid, NotFound, Unavailable

NO_MODEL_ADVICE = (
    "No model is active yet, so there is nothing to predict with. Label some patches (healthy and "
    "diseased) and start a training job (POST /api/v1/training-jobs, admin), or activate an "
    "existing version (POST /api/v1/models/{version}/activate)."
)


class CheckpointError(Exception):
    """The stored checkpoint of a version is missing, altered or cannot be loaded."""


def _load_predictor(data: bytes):
    from ml.predict import Predictor

    predictor = Predictor.from_checkpoint(data)
    if OPTIMIZE_FOR_CPU:
        optimize_for_cpu(predictor)
    return predictor


class _FrozenClassifier:
    """Looks like an eval-mode nn.Module to the predictor (``training``, ``eval``, ``train``) but
    keeps the frozen graph out of the module tree, which frozen TorchScript does not support."""

    training = False

    def __init__(self, graph) -> None:
        self.graph = graph

    def __call__(self, x):
        return self.graph(x)

    def eval(self):
        return self

    def train(self, mode: bool = True):
        if mode:
            raise RuntimeError("the frozen inference copy of a classifier cannot be trained")
        return self


def optimize_for_cpu(predictor, tolerance: float = 1e-4) -> bool:
    """Serve a frozen TorchScript copy of the classifier on CPU, if it computes the same logits.

    Weight norm is folded into plain weights (it is only needed while training), the network is
    traced in channels_last layout and frozen, which lets oneDNN fuse each convolution with its
    LeakyReLU. The copy is used only when its outputs match the original's on random patches;
    otherwise (or on any error) the predictor is left as it was. Returns whether it was swapped.
    """
    import torch
    from torch.nn.utils import parametrize

    if getattr(predictor, "device", None) is None or predictor.device.type != "cpu":
        return False
    try:
        folded = predictor.checkpoint.classifier().eval()
        for module in list(folded.modules()):
            if parametrize.is_parametrized(module):
                for name in list(module.parametrizations.keys()):
                    parametrize.remove_parametrizations(module, name, leave_parametrized=True)
        folded = folded.to(memory_format=torch.channels_last)
        p = predictor.params
        gen = torch.Generator().manual_seed(0)
        example = torch.rand(p.grid * p.grid, 3, p.model_res, p.model_res, generator=gen) * 2 - 1
        with torch.inference_mode(), warnings.catch_warnings():
            warnings.simplefilter("ignore")  # tracer notes about the model's Python control flow
            frozen = _FrozenClassifier(torch.jit.freeze(torch.jit.trace(folded, example, check_trace=False)))
            for _ in range(2):  # the first calls of a frozen graph specialise it
                frozen(example)
            expected = predictor.model.eval()(example)[0]
            got = frozen(example)[0]
        if not torch.allclose(got, expected, atol=tolerance, rtol=tolerance):
            return False
    except Exception:  # an architecture TorchScript cannot trace: keep the eager model
        return False
    predictor.model = frozen
    return True


OPTIMIZE_FOR_CPU = True


def _verified_checkpoint(session: Session, mv: ModelVersion) -> bytes:
    data = session.scalar(select(ModelVersion.checkpoint).where(ModelVersion.id == mv.id))
    if not data:
        raise CheckpointError(f"model version {mv.version} has no checkpoint data")
    digest = hashlib.sha256(data).hexdigest()
    if digest != mv.checkpoint_sha256:
        raise CheckpointError(
            f"the checkpoint of model version {mv.version} does not match its recorded SHA-256 (corrupt)"
        )
    return data


class PredictorCache:
    """Loaded predictors, keyed by checkpoint SHA-256 (a few, most recent last); thread-safe.

    Keyed by content, not by row id: the same bytes always give the same model, whichever
    database or version row they came from.
    """

    def __init__(self, capacity: int = 2) -> None:
        self.capacity = capacity
        self._items: OrderedDict[str, Any] = OrderedDict()
        self._lock = threading.Lock()
        self._loading: dict[str, threading.Lock] = {}

    def get(self, session: Session, mv: ModelVersion):
        key = mv.checkpoint_sha256
        with self._lock:
            if key in self._items:
                self._items.move_to_end(key)
                return self._items[key]
            loading = self._loading.setdefault(key, threading.Lock())
        with loading:  # one load per checkpoint even when many requests arrive together
            with self._lock:
                if key in self._items:
                    return self._items[key]
            data = _verified_checkpoint(session, mv)
            try:
                predictor = _load_predictor(data)
            except Exception as exc:
                raise CheckpointError(
                    f"the checkpoint of model version {mv.version} cannot be loaded: {exc}"
                ) from exc
            with self._lock:
                self._items[key] = predictor
                while len(self._items) > self.capacity:
                    self._items.popitem(last=False)
                self._loading.pop(key, None)
            return predictor

    def clear(self) -> None:
        with self._lock:
            self._items.clear()


predictors = PredictorCache()


@dataclass
class ActiveModelInfo:
    version: ModelVersion
    predictor: Any


def next_version_number(session: Session) -> int:
    return (session.scalar(select(func.max(ModelVersion.version))) or 0) + 1


def register_model_version(
    session: Session,
    checkpoint: bytes,
    *,
    method: str,
    preset: str | None = None,
    threshold: float | None = None,
    metrics: dict[str, Any] | None = None,
    training_summary: dict[str, Any] | None = None,
    training_job_id: int | None = None,
    created_by: User | None = None,
) -> ModelVersion:
    """Store a new immutable version (checked to load first); commits and returns it.

    ``threshold`` defaults to the one the checkpoint carries (chosen on validation data).
    """
    from ml import checkpoint as ckpt

    try:
        loaded = ckpt.load(checkpoint)
    except Exception as exc:
        raise Invalid(f"The checkpoint cannot be loaded, so it was not registered: {exc}") from exc
    if threshold is None:
        threshold = float(getattr(loaded, "threshold", 0.0) or 0.0)
    for attempt in range(5):
        mv = ModelVersion(
            version=next_version_number(session),
            method=method,
            preset=preset,
            checkpoint=checkpoint,
            checkpoint_sha256=hashlib.sha256(checkpoint).hexdigest(),
            checkpoint_size=len(checkpoint),
            threshold=float(threshold),
            metrics=metrics or {},
            training_summary=training_summary or {},
            network_config=loaded.model_cfg.to_dict(),
            training_job_id=training_job_id,
            created_by_id=created_by.id if created_by else None,
        )
        try:
            with session.begin_nested():
                session.add(mv)
                session.flush()
            break
        except IntegrityError:  # two workers registering at once: take the next number
            if attempt == 4:
                raise
    session.commit()
    return mv


def list_versions(session: Session) -> list[ModelVersion]:
    return list(session.scalars(select(ModelVersion).order_by(ModelVersion.version.desc())))


def get_version(session: Session, version: int) -> ModelVersion:
    mv = session.scalar(select(ModelVersion).where(ModelVersion.version == version))
    if mv is None:
        raise NotFound(f"No model version {version}.")
    return mv


def active_version(session: Session) -> ModelVersion | None:
    row = session.get(ActiveModel, 1, populate_existing=True)
    if row is None or row.model_version_id is None:
        return None
    return session.get(ModelVersion, row.model_version_id)


def activate(session: Session, version: int, user: User | None = None) -> ModelVersion:
    """Make ``version`` the serving model, atomically; refuse (409) when its checkpoint is unusable."""
    mv = get_version(session, version)
    previous = active_version(session)
    try:
        predictors.get(session, mv)  # loads and verifies; a corrupt checkpoint never goes live
    except CheckpointError as exc:
        session.rollback()
        keep = f"version {previous.version} stays active" if previous else "no model is active"
        raise Conflict(f"Model version {version} was not activated: {exc}; {keep}.") from exc
    session.execute(
        update(ActiveModel)
        .where(ActiveModel.id == 1)
        .values(model_version_id=mv.id, activated_at=utcnow(), activated_by_id=user.id if user else None)
    )
    session.commit()
    return mv


def active_model(session: Session) -> ActiveModelInfo:
    """The active version and its loaded predictor; 409 with advice when there is none."""
    mv = active_version(session)
    if mv is None:
        raise Conflict(NO_MODEL_ADVICE)
    try:
        return ActiveModelInfo(mv, predictors.get(session, mv))
    except CheckpointError as exc:
        raise Unavailable(
            f"The active model (version {mv.version}) cannot be loaded: {exc}. An admin should activate "
            "another version."
        ) from exc


def check_active_model(session: Session) -> str | None:
    """At start-up and in /health: None when the active model (if any) loads, else the problem."""
    mv = active_version(session)
    if mv is None:
        return None
    try:
        predictors.get(session, mv)
    except CheckpointError as exc:
        return str(exc)
    return None
