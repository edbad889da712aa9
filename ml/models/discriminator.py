"""The discriminator / patch classifier: "conv-large" of the method's Table 3.

Layout (widths ``c1, c2`` = 96, 192 in the full model)::

    dropout 0.2 on the input
    3x3 conv c1, 3x3 conv c1, 3x3 conv c1 stride 2      lReLU 0.2, weight norm; dropout 0.5
    3x3 conv c2, 3x3 conv c2, 3x3 conv c2 stride 2      lReLU 0.2, weight norm; dropout 0.5
    3x3 conv c2 pad 0, 3x3 conv c2 pad 0                (32x32 input: 8x8 -> 6x6 -> 4x4)
    1x1 conv c2 (NiN), 1x1 conv c2 (NiN)
    global pooling (average; max with ModelConfig.pool = "max") -> features
    dense with weight norm -> K logits

The two pad-0 convolutions are stride 1, as in Salimans et al.'s CIFAR model this table copies;
with stride 2 a 32x32 patch would shrink to 1x1 before the NiN layers and the FLOP count of one
training iteration would no longer be the 763 GFLOP measured for the full model (see
ml/bench/train_speed.py, which counts it from the model).

The K+1-class discriminator uses the standard parameterisation: K logits, the fake class's logit
fixed at 0, so D(x) = Z / (Z + 1) with Z = sum(exp(logits)). ``features`` (the activations
after the NiN layers, pooled or per position: TrainConfig.fm_features) are what the generator's
feature-matching loss compares.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn.utils.parametrizations import weight_norm

from ml.train.config import ModelConfig


def _conv(cin: int, cout: int, k: int = 3, stride: int = 1, pad: int = 1) -> nn.Module:
    return weight_norm(nn.Conv2d(cin, cout, k, stride=stride, padding=pad))


class Discriminator(nn.Module):
    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        c1, c2 = cfg.d_widths
        act = nn.LeakyReLU(0.2)
        layers: list[nn.Module] = [nn.Dropout(cfg.input_dropout)]
        specs = [
            (3, c1, 3, 1, 1),
            (c1, c1, 3, 1, 1),
            (c1, c1, 3, 2, 1),
            "drop",
            (c1, c2, 3, 1, 1),
            (c2, c2, 3, 1, 1),
            (c2, c2, 3, 2, 1),
            "drop",
            (c2, c2, 3, 1, 0),
            (c2, c2, 3, 1, 0),
            (c2, c2, 1, 1, 0),
            (c2, c2, 1, 1, 0),
        ]
        for spec in specs:
            if spec == "drop":
                layers.append(nn.Dropout(cfg.dropout))
            else:
                layers += [_conv(*spec), act]
        self.body = nn.Sequential(*layers)
        self.head = weight_norm(nn.Linear(c2, cfg.n_classes))
        self.n_classes = cfg.n_classes
        self.pool_max = cfg.pool == "max"

    def forward(self, x: torch.Tensor, spatial: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
        """Return (logits (B, K), features): the pooled (B, c2), or with ``spatial`` the last NiN
        layer's map (B, c2, h, w) that the pooling reads, for the generator's feature matching."""
        h = self.body(x)
        features = h.amax(dim=(2, 3)) if self.pool_max else h.mean(dim=(2, 3))
        return self.head(features), h if spatial else features


def hidden_scales(d: Discriminator) -> list[nn.Parameter]:
    """The weight-norm scales g of D's hidden layers (every one but the output layer's): what
    ``TrainConfig.wn_scales = "published"`` keeps at their initial values."""
    return [m.parametrizations.weight.original0 for m in d.body if hasattr(m, "parametrizations")]


def patch_logit(logits: torch.Tensor) -> torch.Tensor:
    """The diseased-vs-healthy logit used downstream (l_diseased - l_healthy for K = 2).

    A single-logit model (the ResNet34 baseline with binary cross-entropy) passes through.
    """
    if logits.shape[-1] == 1:
        return logits[..., 0]
    return logits[..., 1] - logits[..., 0]


def prob_real(logits: torch.Tensor) -> torch.Tensor:
    """D(x) = Z / (Z + 1), computed stably as sigmoid(logsumexp(logits))."""
    return torch.sigmoid(torch.logsumexp(logits, dim=-1))
