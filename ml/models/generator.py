"""The generator of the method's Table 4, adapted to the model resolution.

Table 4 is the DCGAN-style generator of Salimans et al.: uniform noise of 100 dimensions, a dense
layer with batch norm and ReLU, then 5x5 transposed convolutions with batch norm and ReLU, the
last one with weight norm and tanh. The adaptation: it starts at 4x4x``g_base`` (512 in the full
model) and doubles the resolution ``log2(model_res / 4)`` times, halving the channels each time,
so that it emits exactly the model resolution (32x32x3 by default: 4 -> 8 -> 16 -> 32) in the
[-1, 1] range of the patches' model input.
"""

from __future__ import annotations

import math

import torch
from torch import nn
from torch.nn.utils.parametrizations import weight_norm

from ml.train.config import ModelConfig


def _up(cin: int, cout: int) -> nn.ConvTranspose2d:
    return nn.ConvTranspose2d(cin, cout, 5, stride=2, padding=2, output_padding=1)


class Generator(nn.Module):
    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        steps = int(math.log2(cfg.model_res // 4))
        if 4 * 2**steps != cfg.model_res:
            raise ValueError(f"model_res must be 4 * 2^n, got {cfg.model_res}")
        self.noise_dim = cfg.noise_dim
        self.base = cfg.g_base
        self.dense = nn.Sequential(
            nn.Linear(cfg.noise_dim, 4 * 4 * cfg.g_base), nn.BatchNorm1d(4 * 4 * cfg.g_base), nn.ReLU()
        )
        layers: list[nn.Module] = []
        ch = cfg.g_base
        for _ in range(steps - 1):
            layers += [_up(ch, ch // 2), nn.BatchNorm2d(ch // 2), nn.ReLU()]
            ch //= 2
        layers += [weight_norm(_up(ch, 3), dim=1), nn.Tanh()]  # dim=1: per output channel
        self.body = nn.Sequential(*layers)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.body(self.dense(z).view(-1, self.base, 4, 4))

    def sample_noise(
        self, n: int, device: torch.device | str, generator: torch.Generator | None = None
    ) -> torch.Tensor:
        """Uniform noise in [0, 1), as in the published model."""
        return torch.rand(n, self.noise_dim, device=device, generator=generator)
