"""Model and training configuration, with named presets.

Two presets matter to users: ``"full"`` is the method as published (conv-large discriminator of
96/192 channels, DCGAN-style generator from 4x4x512, 1200 epochs) and is the default on a GPU;
``"small"`` narrows both networks (16/32 channels in D, 64 at the generator's root), halves the
batch, caps an epoch at 20 iterations (600 in all) so that a CPU-only installation can
retrain in a few minutes, and drops the discriminator's dropout: at 16/32 channels and 600
iterations the published 0.2/0.5 left the patch classifier underfitted (measured on IDRiD, 10 and
20 labeled images: SSL-GAN patch AUC 68 -> 74-76 %, localization 74 -> 79 %, image AUC unchanged;
docs/benchmarks.md (f); at 6,000 iterations with the published optimiser recipe it cost the
SSL-GAN 5.7 and the ConvNet 4.6 points of image AUC over five samplings, input and hidden
dropout both contributing, (o)).
``"tiny"`` exists for tests and for building throw-away checkpoints in a few seconds; it is not
meant to screen anything.
Both dataclasses are plain data so that a checkpoint can carry them (``asdict`` / ``from_dict``).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields, replace
from typing import Any

# Which random streams the trainers draw from: 1 until 2026-12-08 (one host and one device
# generator per trainer, drawn in each trainer's own order), 2 since (``ml.train.loop.Streams``).
# A seed under one version is another training draw under the other; benchmark rows record it.
STREAMS_VERSION = 2


INPUT_NORMS = ("image", "none")
POOLS = ("mean", "max")
PRECISIONS = ("fp32", "bf16")
STEPS = ("eager", "graph")
FM_FEATURES = ("pooled", "spatial")
WN_SCALES = ("trainable", "published")
LABELED_SAMPLINGS = ("tiled", "balanced")


@dataclass(frozen=True)
class ModelConfig:
    n_classes: int = 2  # K real classes (healthy, diseased); the fake class has a fixed 0 logit
    d_widths: tuple[int, int] = (96, 192)  # Table 3: 96-channel then 192-channel blocks
    g_base: int = 512  # Table 4 adapted: 4x4x512 -> 8x8x256 -> 16x16x128 -> 32x32x3
    noise_dim: int = 100
    input_dropout: float = 0.2
    dropout: float = 0.5
    model_res: int = 32
    resnet_width: int = 64  # ResNet34 baseline stem width (64 as published)
    # "image": each image's colours standardised over its field of view before the model
    # (ml.data.colour); "none": the stored max-normalised patches as they are, as published.
    input_norm: str = "image"
    # The discriminator's global pooling over its last 4x4 map: "mean" as in Salimans et al.'s
    # conv-large, "max" keeps a small lesion's response from being averaged with 15 clean cells.
    pool: str = "mean"

    def __post_init__(self) -> None:
        if self.input_norm not in INPUT_NORMS:
            raise ValueError(
                f"unknown input_norm {self.input_norm!r}; choose one of {', '.join(INPUT_NORMS)}"
            )
        if self.pool not in POOLS:
            raise ValueError(f"unknown pool {self.pool!r}; choose one of {', '.join(POOLS)}")

    def to_dict(self) -> dict[str, Any]:
        return _plain(asdict(self))

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> ModelConfig:
        # Checkpoints written before input_norm existed fed the stored patches unchanged.
        return cls(**{"input_norm": "none", **_known(cls, d, tuples=("d_widths",))})


@dataclass(frozen=True)
class TrainConfig:
    epochs: int = 1200
    batch_size: int = 100
    lr: float = 3e-4
    beta1: float = 0.5
    lr_decay_start: float = 2 / 3  # fraction of training after which the lr falls linearly to 0
    ema_decay: float = 0.999
    augment: bool = True
    crop_pad: int = 2  # random pad-and-crop translation in pixels
    seed: int = 0
    # An epoch is one pass over the unlabeled patches (labeled ones tiled to the same length);
    # capping iterations per epoch is how CPU presets and learning curves shorten training.
    max_iters_per_epoch: int | None = None
    eval_every: int = 10  # epochs between validation evaluations (checkpoint selection)
    select_on_val: bool = True  # keep the EMA weights with the best validation AUC
    target_sensitivity: float = 0.87
    unlabeled_weight: float = 1.0
    # Which of D's activations the generator's feature matching compares (batch means, L1):
    # "pooled", the globally pooled features, as Salimans et al.'s CIFAR-10 code does (the output
    # of its global pooling layer), or "spatial", the last NiN layer's map before pooling, one
    # reading of the method's "the activations after the NiN layers".
    fm_features: str = "pooled"
    # Weight norm's scales g: "trainable" everywhere, each starting at unit pre-activations (what
    # this project trained until 2026-11-28), or "published", as Salimans et al.'s code has them:
    # the discriminator's hidden layers keep the scales their data-dependent init gave them (only
    # directions and biases train), while D's output layer and G's last layer train theirs and
    # start at pre-activations of std 0.1 (docs/method.md "Initialisation"; measured in
    # docs/benchmarks.md (n) and (o)).
    wn_scales: str = "trainable"
    # Adam's epsilon for both GAN networks. PyTorch adds it to sqrt(v); Salimans et al.'s code adds
    # 1e-8 to v under the root, so a parameter whose gradient RMS is far below 1e-4 (D's, once it
    # wins the game) takes steps far below the learning rate there instead of full-size ones.
    # 1e-4 reproduces that floor within a factor of sqrt(2) (docs/method.md "Optimiser epsilon";
    # measured in docs/benchmarks.md (o)).
    adam_eps: float = 1e-8
    # The generator's learning rate as a multiple of ``lr`` (same schedule). 1 as published; below
    # 1 slows the generator against the discriminator, a stabiliser from outside the method
    # (two time-scale updates) measured in docs/benchmarks.md (q).
    g_lr_scale: float = 1.0
    # How each epoch draws the labeled patches (SSL-GAN and ConvNet; ml.train.loop.labeled_indices):
    # "tiled", the labeled set repeated in random order, as the method describes; "balanced", an
    # equal share per class, as Salimans et al.'s code labels an equal number per class. Measured
    # in docs/benchmarks.md (r).
    labeled_sampling: str = "tiled"
    # Supervised baselines (Table 5 for ResNet34): these apply only to ml.train.supervised.
    sup_lr: float = 1e-5
    patience: int = 20
    plateau_patience: int = 10
    weight_decay: float = 0.0
    # bf16 autocast of the training forward passes (evaluation and prediction stay fp32): what the
    # fast GPU step of docs/benchmarks.md "Training speed" runs in. The method allows mixed
    # precision only where a paired protocol run shows the AUC holds; that run (docs/benchmarks.md
    # (i)) found no loss over 24 epochs, but the three 120-epoch pairs of (k) were 0.3-16 points
    # lower in bf16, so it is cleared for short runs only (`ml.bench.paper --precision bf16`). The
    # presets keep fp32: the measured speed-up comes with the captured step (`step` below), whose
    # compile takes about as long as a whole short retraining.
    precision: str = "fp32"
    # How the SSL-GAN's iteration runs: "eager" (plain PyTorch, any device) or "graph" (CUDA only:
    # channels_last, inductor-compiled networks, the whole iteration replayed as one CUDA graph;
    # ml.train.ssl_gan.GraphedStep). Same arithmetic, fewer launches; the baselines stay eager.
    step: str = "eager"

    def __post_init__(self) -> None:
        if self.precision not in PRECISIONS:
            raise ValueError(f"unknown precision {self.precision!r}; choose one of {', '.join(PRECISIONS)}")
        if self.step not in STEPS:
            raise ValueError(f"unknown step {self.step!r}; choose one of {', '.join(STEPS)}")
        if self.fm_features not in FM_FEATURES:
            raise ValueError(
                f"unknown fm_features {self.fm_features!r}; choose one of {', '.join(FM_FEATURES)}"
            )
        if self.wn_scales not in WN_SCALES:
            raise ValueError(f"unknown wn_scales {self.wn_scales!r}; choose one of {', '.join(WN_SCALES)}")
        if not 0.0 < self.adam_eps < 1.0:
            raise ValueError(f"adam_eps must lie in (0, 1), not {self.adam_eps!r}")
        if self.labeled_sampling not in LABELED_SAMPLINGS:
            raise ValueError(
                f"unknown labeled_sampling {self.labeled_sampling!r}; "
                f"choose one of {', '.join(LABELED_SAMPLINGS)}"
            )
        if not self.g_lr_scale > 0.0:
            raise ValueError(f"g_lr_scale must be positive, not {self.g_lr_scale!r}")

    def to_dict(self) -> dict[str, Any]:
        return _plain(asdict(self))

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> TrainConfig:
        return cls(**_known(cls, d))


PRESETS: dict[str, tuple[ModelConfig, TrainConfig]] = {
    "full": (ModelConfig(), TrainConfig()),
    "small": (
        ModelConfig(d_widths=(16, 32), g_base=64, resnet_width=8, input_dropout=0.0, dropout=0.0),
        TrainConfig(epochs=30, batch_size=50, max_iters_per_epoch=20, eval_every=5),
    ),
    "tiny": (
        ModelConfig(d_widths=(8, 16), g_base=32, resnet_width=8),
        TrainConfig(epochs=3, batch_size=32, max_iters_per_epoch=4, eval_every=1, ema_decay=0.9),
    ),
}


def preset(name: str, **train_overrides: Any) -> tuple[ModelConfig, TrainConfig]:
    """The named preset, with TrainConfig fields overridden (e.g. ``epochs=5``)."""
    if name not in PRESETS:
        raise ValueError(f"unknown preset {name!r}; choose one of {sorted(PRESETS)}")
    model, train = PRESETS[name]
    return model, replace(train, **train_overrides)


def _plain(d: dict[str, Any]) -> dict[str, Any]:
    return {k: list(v) if isinstance(v, tuple) else v for k, v in d.items()}


def _known(cls: type, d: dict[str, Any], tuples: tuple[str, ...] = ()) -> dict[str, Any]:
    names = {f.name for f in fields(cls)}
    return {k: tuple(v) if k in tuples else v for k, v in d.items() if k in names}
