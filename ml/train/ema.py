"""Exponential moving average of a network's weights, used for every evaluation and prediction.

The averaged copy is a full module (same class, eval mode) so that evaluation code never has to
swap weights in and out of the training network. Buffers (batch-norm statistics) are copied, not
averaged: they are already running averages.
"""

from __future__ import annotations

import copy

import torch
from torch import nn


class EMA:
    """``decay`` is reached after a warm-up: step t uses min(decay, (1 + t) / (10 + t)).

    Without the warm-up a 0.999 average of a short CPU run (a few hundred iterations) would still
    be mostly the random initial weights.
    """

    def __init__(self, model: nn.Module, decay: float = 0.999) -> None:
        self.decay = decay
        self.steps = 0
        self.module = copy.deepcopy(model).eval()
        for p in self.module.parameters():
            p.requires_grad_(False)

    @torch.no_grad()
    def update(self, model: nn.Module) -> None:
        """ema <- decay * ema + (1 - decay) * current, for every parameter."""
        decay = min(self.decay, (1.0 + self.steps) / (10.0 + self.steps))
        self.steps += 1
        ema_params = list(self.module.parameters())
        params = [p.detach() for p in model.parameters()]
        torch._foreach_lerp_(ema_params, params, 1.0 - decay)
        for b_ema, b in zip(self.module.buffers(), model.buffers(), strict=True):
            b_ema.copy_(b)

    def state_dict(self) -> dict[str, torch.Tensor]:
        return {k: v.detach().clone() for k, v in self.module.state_dict().items()}
