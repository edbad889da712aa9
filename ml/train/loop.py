"""What every trainer shares: the data it takes, the progress it reports, the result it returns,
cancellation, device choice, weight init, evaluation with the EMA weights and model selection.
"""

from __future__ import annotations

import copy
import math
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from typing import Any

import numpy as np
import torch
from torch import nn

from ml.data.colour import standardise_colour
from ml.eval.metrics import auc as roc_auc
from ml.eval.metrics import choose_threshold, image_scores, patch_auc
from ml.models.discriminator import patch_logit
from ml.train.config import ModelConfig, TrainConfig


def model_patches(patches: np.ndarray, model_cfg: ModelConfig) -> np.ndarray:
    """Stored uint8 patch grids -> the uint8 grids this model is fed (``ModelConfig.input_norm``)."""
    return standardise_colour(patches) if model_cfg.input_norm == "image" else patches


class TrainingCancelled(Exception):  # noqa: N818 - reads as an event, like StopIteration
    """Raised inside ``train`` when ``should_stop()`` returned True; no model is produced."""

    def __init__(self, epoch: int, iteration: int) -> None:
        super().__init__(f"training cancelled at epoch {epoch}, iteration {iteration}")
        self.epoch, self.iteration = epoch, iteration


@dataclass
class TrainData:
    """Training and validation patches in the storage format (uint8, flat patch index second).

    ``patch_labels`` is (N, 64) with 0 healthy, 1 diseased, -1 unknown: every training patch is
    used as unlabeled data, the labeled ones also supervise. ``val_*`` (optional) drive model
    selection and the decision threshold; ``extra_unlabeled`` (U, 3, r, r) adds unlabeled patches.
    """

    patches: np.ndarray
    patch_labels: np.ndarray
    image_ids: list[str] = field(default_factory=list)
    val_patches: np.ndarray | None = None
    val_patch_labels: np.ndarray | None = None
    val_image_labels: np.ndarray | None = None
    extra_unlabeled: np.ndarray | None = None
    params: Any = None  # ml.data.patches.PatchParams (default grid when None)
    input_norm: str = "none"  # what was already applied to the arrays (``for_model``)

    def __post_init__(self) -> None:
        if self.patches.dtype != np.uint8 or self.patches.ndim != 5:
            raise ValueError(
                f"patches must be uint8 (N, 64, 3, r, r), got {self.patches.dtype} {self.patches.shape}"
            )
        if self.patch_labels.shape != self.patches.shape[:2]:
            raise ValueError(
                f"patch_labels {self.patch_labels.shape} do not match patches {self.patches.shape[:2]}"
            )
        if not self.image_ids:
            self.image_ids = [str(i) for i in range(len(self.patches))]

    @property
    def has_val(self) -> bool:
        return (
            self.val_patches is not None and self.val_image_labels is not None and len(self.val_patches) > 0
        )

    def summary(self) -> dict[str, Any]:
        labels = self.patch_labels
        return {
            "image_ids": list(self.image_ids),
            "n_images": int(len(self.patches)),
            "n_labeled_patches": int((labels >= 0).sum()),
            "n_healthy_patches": int((labels == 0).sum()),
            "n_diseased_patches": int((labels == 1).sum()),
            "n_unlabeled_patches": int(
                labels.size + (0 if self.extra_unlabeled is None else len(self.extra_unlabeled))
            ),
            "n_val_images": int(len(self.val_patches)) if self.val_patches is not None else 0,
        }


def for_model(data: TrainData, model_cfg: ModelConfig) -> TrainData:
    """The training and validation grids as the model will see them; a no-op when already so."""
    if data.input_norm == model_cfg.input_norm:
        return data
    if data.input_norm != "none":
        raise ValueError(
            f"data prepared for input_norm {data.input_norm!r} cannot feed {model_cfg.input_norm!r}"
        )
    if data.extra_unlabeled is not None and len(data.extra_unlabeled):
        raise ValueError("loose extra_unlabeled patches have no image to standardise colours over")
    val = None if data.val_patches is None else model_patches(data.val_patches, model_cfg)
    return replace(
        data,
        patches=model_patches(data.patches, model_cfg),
        val_patches=val,
        input_norm=model_cfg.input_norm,
    )


@dataclass
class Progress:
    epoch: int
    epochs: int
    iteration: int
    iterations: int
    losses: dict[str, float]
    val_patch_auc: float | None
    val_image_auc: float | None
    it_per_s: float
    eta_s: float
    elapsed_s: float

    def to_dict(self) -> dict[str, Any]:
        return {k: (None if isinstance(v, float) and math.isnan(v) else v) for k, v in asdict(self).items()}


@dataclass
class TrainResult:
    method: str
    model_cfg: ModelConfig
    train_cfg: TrainConfig
    state_dict: dict[str, torch.Tensor]  # EMA weights of the patch classifier, on CPU
    threshold: float
    threshold_source: str
    val_metrics: dict[str, float | None]
    history: list[dict[str, Any]]
    data_summary: dict[str, Any]
    best_epoch: int
    epochs_run: int
    wall_s: float
    device: str
    params: Any = None

    def classifier(self) -> nn.Module:
        from ml.models import build_classifier

        model = build_classifier(self.method, self.model_cfg)
        model.load_state_dict(self.state_dict)
        return model.eval()


def resolve_device(device: str | torch.device | None) -> torch.device:
    """``None``/``"auto"`` -> CUDA when available, else CPU; anything else is taken as given."""
    if device is None or str(device) == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


@dataclass(frozen=True)
class Streams:
    """A training run's random numbers, one generator per use.

    A trainer that skips a use leaves the other streams where they were: the ConvNet draws no
    unlabeled batches and no noise, so it starts from the weights and sees the labeled batches and
    augmentations that the SSL-GAN trainer with the same seed does (common random numbers). With
    the unlabeled term off and no dropout (whose masks come from torch's global generator), the two
    trainers then compute the same discriminator up to rounding (tests/ml/train/test_streams.py),
    and any difference between them is the unlabeled term's, not a different draw's.
    """

    init: torch.Generator  # host: initial weights and the data-dependent init's batch
    labeled: torch.Generator  # host: each epoch's order of the labeled patches
    unlabeled: torch.Generator  # host: each epoch's two orders of the unlabeled patches
    labeled_aug: torch.Generator  # device: augmentation of the labeled batches
    unlabeled_aug: torch.Generator  # device: augmentation of the unlabeled batches
    noise: torch.Generator  # device: the generator's input noise

    @classmethod
    def from_seed(cls, seed: int, device: torch.device | str = "cpu") -> Streams:
        """Six independent generators from one seed (numpy's SeedSequence spawns their seeds)."""
        children = np.random.SeedSequence(seed).spawn(6)
        seeds = [int(c.generate_state(1)[0]) for c in children]
        host = [torch.Generator().manual_seed(s) for s in seeds[:3]]
        dev = [torch.Generator(device=device).manual_seed(s) for s in seeds[3:]]
        return cls(*host, *dev)

    def device_generators(self) -> tuple[torch.Generator, ...]:
        """The generators one training iteration draws from on the device (a CUDA graph's)."""
        return self.labeled_aug, self.unlabeled_aug, self.noise


def init_weights(model: nn.Module, std: float = 0.05, generator: torch.Generator | None = None) -> None:
    """Weights N(0, std), biases 0; a weight-normed layer's scale g starts at ||v||.

    So at step 0 the effective weights are exactly N(0, std), as in the method's Table 6.
    ``data_dependent_init`` then rescales the weight-normed layers (``init_classifier``).
    Batch-norm layers keep PyTorch's defaults (scale 1, shift 0). ``generator``: the draw's own
    stream (``Streams.init``); torch's global generator when None.
    """
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.BatchNorm1d | nn.BatchNorm2d):
                continue
            pz = getattr(m, "parametrizations", None)
            if pz is not None and "weight" in pz:
                v, g = pz.weight.original1, pz.weight.original0
                v.normal_(0.0, std, generator=generator)
                dim = next(i for i, s in enumerate(g.shape) if s != 1) if g.numel() > 1 else 0
                g.copy_(torch.norm_except_dim(v, 2, dim))
            elif isinstance(getattr(m, "weight", None), torch.Tensor):
                m.weight.normal_(0.0, std, generator=generator)
            if isinstance(getattr(m, "bias", None), torch.Tensor):
                m.bias.zero_()


def init_classifier(
    model: nn.Module,
    x_unl: np.ndarray | torch.Tensor,
    gen: torch.Generator,
    device: torch.device,
    n: int = 500,
    last_std: float = 1.0,
) -> None:
    """The discriminator's (and the ConvNet's) init: N(0, 0.05) weights from ``gen``, then weight
    norm's data-dependent init on ``n`` unlabeled patches drawn with ``gen``; one function, so
    that both trainers start from the same weights for the same seed."""
    init_weights(model, generator=gen)
    idx = torch.randperm(len(x_unl), generator=gen)[:n]
    picked = x_unl[idx.numpy()] if isinstance(x_unl, np.ndarray) else x_unl[idx.to(x_unl.device)]
    batch = to_model_input(torch.as_tensor(picked).to(device))
    data_dependent_init(model, lambda: model(batch), last_std=last_std)


@torch.no_grad()
def data_dependent_init(model: nn.Module, run: Callable[[], Any], last_std: float = 1.0) -> None:
    """Weight norm's data-dependent init (Salimans & Kingma 2016), layer by layer in forward order.

    Each weight-normed layer's scale and bias are set so that its pre-activations on the batch
    that ``run()`` feeds through have zero mean and unit variance per channel. Without it, a
    narrow network (the small and tiny presets) starts with activations that shrink layer by
    layer under N(0, 0.05) weights (fan-in 288 gives a gain of ~0.6 per layer), and the feature
    matching loss starts near 1e-7; with it, every width starts at the same scale.

    Dropout is off while measuring, but batch norm (the generator's) normalises with the batch's
    statistics, as it will in training: measured in eval mode, against running statistics that
    are still (0, 1), a scale set for the un-normalised activations would blow up once training
    normalises them (the generator's tanh started saturated, its samples binary noise, until
    2026-11-28). The running statistics are restored afterwards, untouched by these passes.
    ``last_std``: the target std of the last weight-normed layer (the output layer of both
    networks; Salimans et al.'s code starts those at 0.1).
    """
    was_training = model.training
    model.train()
    for m in model.modules():
        if isinstance(m, nn.Dropout):
            m.eval()
    saved = [(b, b.clone()) for b in model.buffers()]
    normed = [m for m in model.modules() if "weight" in getattr(m, "parametrizations", {})]
    for m in normed:
        pz = m.parametrizations
        seen: list[torch.Tensor] = []
        handle = m.register_forward_hook(lambda _m, _i, out, seen=seen: seen.append(out.detach()))
        try:
            run()
        finally:
            handle.remove()
        out = seen[0]
        dims = [d for d in range(out.dim()) if d != 1]
        mean, std = out.mean(dim=dims), out.std(dim=dims) / (last_std if m is normed[-1] else 1.0) + 1e-6
        g = pz.weight.original0
        g.mul_((1.0 / std).view_as(g))
        if getattr(m, "bias", None) is not None:
            m.bias.copy_(-mean / std)
    for b, value in saved:
        b.copy_(value)
    model.train(was_training)


def amp_dtype(cfg: TrainConfig) -> torch.dtype | None:
    """The autocast dtype of the training forward passes, None for plain fp32."""
    return torch.bfloat16 if cfg.precision == "bf16" else None


def autocast(dev: torch.device, cfg: TrainConfig) -> torch.autocast:
    """Autocast for a training forward pass: on with ``cfg.precision`` bf16, a no-op for fp32."""
    dtype = amp_dtype(cfg)
    return torch.autocast(dev.type, dtype=dtype or torch.bfloat16, enabled=dtype is not None)


def to_model_input(x: torch.Tensor) -> torch.Tensor:
    """uint8 patches -> float in [-1, 1] (the generator's tanh range)."""
    return x.float() / 127.5 - 1.0


@torch.no_grad()
def classifier_patch_logits(
    model: nn.Module, patches: np.ndarray, device: torch.device, batch: int = 4096
) -> np.ndarray:
    """(N, 64, 3, r, r) uint8 -> (N, 64) float32 diseased logits, model in eval mode."""
    was_training = model.training
    model.eval()
    flat = patches.reshape(-1, *patches.shape[-3:])
    out = []
    for i in range(0, len(flat), batch):
        x = to_model_input(torch.from_numpy(np.ascontiguousarray(flat[i : i + batch])).to(device))
        out.append(patch_logit(model(x)[0]).float().cpu())
    model.train(was_training)
    return torch.cat(out).numpy().reshape(patches.shape[:2]).astype(np.float32)


def evaluate(
    model: nn.Module,
    patches: np.ndarray,
    patch_labels: np.ndarray | None,
    image_labels: np.ndarray | None,
    device: torch.device,
) -> dict[str, Any]:
    logits = classifier_patch_logits(model, patches, device)
    scores = image_scores(logits)
    return {
        "logits": logits,
        "scores": scores,
        "patch_auc": patch_auc(logits, patch_labels) if patch_labels is not None else math.nan,
        "image_auc": roc_auc(image_labels, scores) if image_labels is not None else math.nan,
    }


def selection_key(metrics: dict[str, Any]) -> tuple[float, float]:
    """Validation image AUC first (the screening goal), patch AUC to break its frequent ties."""

    def val(x: float) -> float:
        return -1.0 if x is None or math.isnan(x) else float(x)

    return val(metrics["image_auc"]), val(metrics["patch_auc"])


def pick_threshold(
    model: nn.Module, data: TrainData, target: float, device: torch.device
) -> tuple[float, str]:
    """Threshold on validation images when there are any (the default); else on training images.

    Training images give an optimistic threshold, so the source is recorded with the model.
    """
    if data.has_val and (np.asarray(data.val_image_labels) == 1).any():
        scores = image_scores(classifier_patch_logits(model, data.val_patches, device))
        return choose_threshold(scores, data.val_image_labels, target), "validation"
    image_labels = (data.patch_labels == 1).any(axis=1).astype(int)
    labeled = (data.patch_labels >= 0).any(axis=1)
    if (image_labels[labeled] == 1).any():
        scores = image_scores(classifier_patch_logits(model, data.patches[labeled], device))
        return choose_threshold(scores, image_labels[labeled], target), "training"
    return 1.0, "default"


class Selection:
    """The EMA snapshot with the best validation key, checked every ``eval_every`` epochs and at
    the last: GAN runs have bad epochs late, so the last weights are not simply the best."""

    def __init__(self, data: TrainData, cfg: TrainConfig, device: torch.device) -> None:
        self.data, self.cfg, self.device = data, cfg, device
        self.key: tuple[float, float] | None = None
        self.model: nn.Module | None = None
        self.epoch = cfg.epochs
        self.val: dict[str, Any] | None = None

    def observe(self, epoch: int, ema_model: nn.Module) -> dict[str, Any] | None:
        """Validation metrics of ``ema_model`` when this epoch is evaluated; keeps a copy if best."""
        data, cfg = self.data, self.cfg
        if not data.has_val or not (epoch % cfg.eval_every == 0 or epoch == cfg.epochs):
            return None
        val = evaluate(ema_model, data.val_patches, data.val_patch_labels, data.val_image_labels, self.device)
        key = selection_key(val)
        if cfg.select_on_val and (self.key is None or key > self.key):
            self.key, self.model, self.epoch, self.val = key, copy.deepcopy(ema_model), epoch, val
        return val


def finish(
    method: str,
    model: nn.Module,
    *,
    best_epoch: int,
    epochs_run: int,
    history: list[dict[str, Any]],
    best_val: dict[str, Any] | None,
    data: TrainData,
    cfg: TrainConfig,
    model_cfg: ModelConfig,
    device: torch.device,
    t0: float,
) -> TrainResult:
    """The selected model's threshold, validation metrics and a CPU copy of its weights."""
    if best_val is None and data.has_val:
        best_val = evaluate(model, data.val_patches, data.val_patch_labels, data.val_image_labels, device)
    threshold, source = pick_threshold(model, data, cfg.target_sensitivity, device)
    val_metrics = (
        {} if best_val is None else {k: finite_or_none(best_val[k]) for k in ("patch_auc", "image_auc")}
    )
    return TrainResult(
        method=method,
        model_cfg=model_cfg,
        train_cfg=cfg,
        state_dict={k: v.detach().cpu().clone() for k, v in model.state_dict().items()},
        threshold=threshold,
        threshold_source=source,
        val_metrics=val_metrics,
        history=history,
        data_summary=data.summary(),
        best_epoch=best_epoch,
        epochs_run=epochs_run,
        wall_s=time.perf_counter() - t0,
        device=str(device),
        params=data.params,
    )


def epoch_indices(n: int, needed: int, gen: torch.Generator) -> torch.Tensor:
    """Concatenated random permutations of range(n), truncated to ``needed`` (tiles small sets)."""
    reps = max(1, math.ceil(needed / n))
    return torch.cat([torch.randperm(n, generator=gen) for _ in range(reps)])[:needed]


def labeled_indices(y: torch.Tensor, needed: int, gen: torch.Generator, sampling: str) -> torch.Tensor:
    """One epoch's order over the labeled patches (``TrainConfig.labeled_sampling``).

    "tiled": the labeled set repeated in random order, so each class appears as often as it is
    labeled (8-28 % diseased at 10 IDRiD images with lesion-mask labels). "balanced": each
    class's patches tiled on their own to an equal share of the epoch, then shuffled together, as
    Salimans et al.'s code labels an equal number of examples per class. Measured worse for the
    image score here (docs/benchmarks.md (r)): it lifts every healthy patch's probability, and
    the score sums 64 of them.
    """
    if sampling == "tiled":
        return epoch_indices(len(y), needed, gen)
    y = y.cpu()
    classes = torch.unique(y)
    share = math.ceil(needed / len(classes))
    parts = []
    for c in classes:
        members = torch.nonzero(y == c).flatten()
        parts.append(members[epoch_indices(len(members), share, gen)])
    mixed = torch.cat(parts)
    return mixed[torch.randperm(len(mixed), generator=gen)][:needed]


def lr_factor(step: int, total: int, decay_start: float) -> float:
    """1 until ``decay_start`` of training, then linear to 0 at the end."""
    frac = step / max(total, 1)
    if frac <= decay_start:
        return 1.0
    return max(0.0, (1.0 - frac) / max(1e-9, 1.0 - decay_start))


class Reporter:
    """Builds Progress objects and calls on_progress at most every ``min_interval_s`` inside epochs."""

    def __init__(
        self,
        epochs: int,
        iters_per_epoch: int,
        on_progress: Callable[[Progress], None] | None,
        min_interval_s: float = 2.0,
    ) -> None:
        self.epochs, self.ipe = epochs, iters_per_epoch
        self.total = epochs * iters_per_epoch
        self.cb = on_progress
        self.start = time.perf_counter()
        self.last = -math.inf
        self.min_interval_s = min_interval_s

    def __call__(
        self,
        epoch: int,
        it: int,
        losses: dict[str, float],
        val: dict[str, Any] | None = None,
        force: bool = False,
    ) -> Progress:
        now = time.perf_counter()
        elapsed = now - self.start
        rate = it / elapsed if elapsed > 0 else 0.0
        p = Progress(
            epoch=epoch,
            epochs=self.epochs,
            iteration=it,
            iterations=self.total,
            losses={k: float(v) for k, v in losses.items()},
            val_patch_auc=None if val is None else finite_or_none(val["patch_auc"]),
            val_image_auc=None if val is None else finite_or_none(val["image_auc"]),
            it_per_s=rate,
            eta_s=(self.total - it) / rate if rate > 0 else math.inf,
            elapsed_s=elapsed,
        )
        if self.cb is not None and (force or now - self.last >= self.min_interval_s):
            self.last = now
            self.cb(p)
        return p


def finite_or_none(x: float | None) -> float | None:
    """JSON and the database take None, not NaN, for an AUC that a one-class set leaves undefined."""
    return None if x is None or math.isnan(x) else float(x)
