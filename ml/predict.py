"""Image-level predictions from a checkpoint: per-patch logits, score, decision, 8x8 probabilities.

The score is the sum over the 64 patches of sigmoid(diseased logit), compared with the threshold
stored in the checkpoint (chosen on validation data). One ``Predictor`` is shared by all request
threads of a server: a lock makes sure only one forward pass runs at a time, which bounds memory
and keeps PyTorch's intra-op thread pool from being oversubscribed by concurrent calls.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ml.checkpoint import Checkpoint, load
from ml.eval.metrics import image_scores, sigmoid
from ml.train.loop import classifier_patch_logits, model_patches, resolve_device


@dataclass(frozen=True)
class Prediction:
    score: float
    threshold: float
    diseased: bool
    probabilities: np.ndarray  # float32 (grid, grid), row-major as the patch grid
    logits: np.ndarray  # float32 (grid * grid,)

    def to_dict(self) -> dict[str, Any]:
        return {
            "score": self.score,
            "threshold": self.threshold,
            "diseased": self.diseased,
            "probabilities": self.probabilities.round(6).tolist(),
        }


class Predictor:
    def __init__(self, checkpoint: Checkpoint, device: str | torch.device | None = None) -> None:
        self.checkpoint = checkpoint
        self.params = checkpoint.params
        self.threshold = checkpoint.threshold
        self.method = checkpoint.method
        self.device = resolve_device(device)
        self.model = checkpoint.classifier().to(self.device).eval()
        self._lock = threading.Lock()

    @classmethod
    def from_checkpoint(
        cls, src: bytes | bytearray | memoryview | str | Path, device: str | torch.device | None = None
    ) -> Predictor:
        return cls(load(src), device)

    def _batch(self, patches: np.ndarray) -> np.ndarray:
        p = self.params
        shape = (p.grid * p.grid, 3, p.model_res, p.model_res)
        arr = np.asarray(patches)
        if arr.shape == shape:
            arr = arr[None]
        if arr.dtype != np.uint8 or arr.ndim != 5 or arr.shape[1:] != shape:
            raise ValueError(
                f"expected uint8 patches of shape (B, *{shape}) for this model, got {arr.dtype} {arr.shape}"
            )
        return arr

    def patch_logits(self, patches: np.ndarray) -> np.ndarray:
        """uint8 (B, 64, 3, r, r) or (64, 3, r, r) -> float32 (B, 64) diseased logits."""
        arr = model_patches(self._batch(patches), self.checkpoint.model_cfg)
        with self._lock:
            return classifier_patch_logits(self.model, arr, self.device)

    def predict(self, patches: np.ndarray) -> list[Prediction]:
        logits = self.patch_logits(patches)
        scores = image_scores(logits)
        grid = self.params.grid
        probs = sigmoid(logits).astype(np.float32)
        return [
            Prediction(
                score=float(s),
                threshold=self.threshold,
                diseased=bool(s >= self.threshold),
                probabilities=pr.reshape(grid, grid),
                logits=lg,
            )
            for s, pr, lg in zip(scores, probs, logits, strict=True)
        ]
