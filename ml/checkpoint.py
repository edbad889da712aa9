"""Checkpoints as bytes, so that they can live in the database and travel to any worker.

A checkpoint alone rebuilds the predictor: it carries the method, the model configuration, the
preprocessing parameters, the decision threshold, the training configuration and a summary of the
data it was trained on, plus the EMA weights. It is a ``torch.save`` of plain data and tensors
only, read back with ``weights_only=True`` (no pickled code is ever executed on load).
"""

from __future__ import annotations

import io
import math
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import torch

from ml.train.config import ModelConfig, TrainConfig

FORMAT = "patchscreen-checkpoint"
FORMAT_VERSION = 1


class CheckpointError(ValueError):
    """The bytes are not a checkpoint this version of PatchScreen can use."""


@dataclass
class Checkpoint:
    method: str
    model_cfg: ModelConfig
    train_cfg: TrainConfig
    params: Any  # ml.data.patches.PatchParams
    threshold: float
    state_dict: dict[str, torch.Tensor]
    data_summary: dict[str, Any] = field(default_factory=dict)
    metrics: dict[str, Any] = field(default_factory=dict)
    created_at: str = ""
    format_version: int = FORMAT_VERSION

    def classifier(self) -> torch.nn.Module:
        from ml.models import build_classifier

        model = build_classifier(self.method, self.model_cfg)
        model.load_state_dict(self.state_dict)
        return model.eval()


def save(result: Any, path: str | Path | None = None, metrics: dict[str, Any] | None = None) -> bytes:
    """Serialise a TrainResult (or a Checkpoint); also written to ``path`` when given."""
    params = result.params if result.params is not None else _default_params()
    extra = dict(getattr(result, "val_metrics", {}) or {})
    if hasattr(result, "threshold_source"):
        extra.update(
            threshold_source=result.threshold_source,
            best_epoch=result.best_epoch,
            epochs_run=result.epochs_run,
            wall_s=result.wall_s,
            device=result.device,
        )
    extra.update(getattr(result, "metrics", {}) or {})
    extra.update(metrics or {})
    payload = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "method": result.method,
        "model_cfg": result.model_cfg.to_dict(),
        "train_cfg": result.train_cfg.to_dict(),
        "params": params.to_dict(),
        "threshold": float(result.threshold),
        "data_summary": result.data_summary,
        "metrics": {k: (None if isinstance(v, float) and math.isnan(v) else v) for k, v in extra.items()},
        "created_at": getattr(result, "created_at", "") or datetime.now(UTC).isoformat(timespec="seconds"),
        "torch_version": str(torch.__version__),
        "state_dict": {k: v.detach().cpu().contiguous() for k, v in result.state_dict.items()},
    }
    buf = io.BytesIO()
    torch.save(payload, buf)
    data = buf.getvalue()
    if path is not None:
        Path(path).write_bytes(data)
    return data


def load(src: bytes | bytearray | memoryview | str | Path) -> Checkpoint:
    """Read a checkpoint from bytes or a path; refuses foreign files and other format versions."""
    raw = Path(src).read_bytes() if isinstance(src, str | Path) else bytes(src)
    try:
        payload = torch.load(io.BytesIO(raw), map_location="cpu", weights_only=True)
    except Exception as exc:
        raise CheckpointError(
            f"not a PatchScreen checkpoint (could not be read: {exc.__class__.__name__})"
        ) from exc
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise CheckpointError("not a PatchScreen checkpoint (missing format marker)")
    version = payload.get("format_version")
    if version != FORMAT_VERSION:
        raise CheckpointError(
            f"checkpoint format version {version} is not supported: this PatchScreen reads version "
            f"{FORMAT_VERSION}. Retrain the model with this version (or use the PatchScreen that made it)."
        )
    from ml.data.patches import PatchParams

    return Checkpoint(
        method=payload["method"],
        model_cfg=ModelConfig.from_dict(payload["model_cfg"]),
        train_cfg=TrainConfig.from_dict(payload["train_cfg"]),
        params=PatchParams(**payload["params"]),
        threshold=float(payload["threshold"]),
        state_dict=payload["state_dict"],
        data_summary=payload.get("data_summary", {}),
        metrics=payload.get("metrics", {}),
        created_at=payload.get("created_at", ""),
        format_version=version,
    )


def _default_params() -> Any:
    from ml.data.patches import PatchParams

    return PatchParams()
