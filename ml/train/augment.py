"""Batched patch augmentation on the device (no per-sample Python loop, no host sync).

``pad_crop_flip`` is the SSL-GAN's augmentation (random pad-and-crop translation plus horizontal
and vertical flips); ``affine_flip`` is the ResNet34 baseline's (Table 5: rotation 0-180 degrees,
flips, shifts up to 30 %).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F


def pad_crop_flip(x: torch.Tensor, pad: int, generator: torch.Generator | None = None) -> torch.Tensor:
    b, c, h, w = x.shape
    dev = x.device
    if pad > 0:
        xp = F.pad(x, (pad, pad, pad, pad), mode="reflect")
        dy = torch.randint(0, 2 * pad + 1, (b,), device=dev, generator=generator)
        dx = torch.randint(0, 2 * pad + 1, (b,), device=dev, generator=generator)
        iy = (dy[:, None] + torch.arange(h, device=dev))[:, None, :, None]
        ix = (dx[:, None] + torch.arange(w, device=dev))[:, None, None, :]
        x = xp[
            torch.arange(b, device=dev)[:, None, None, None],
            torch.arange(c, device=dev)[None, :, None, None],
            iy,
            ix,
        ]
    flip_h = torch.rand(b, device=dev, generator=generator) < 0.5
    flip_v = torch.rand(b, device=dev, generator=generator) < 0.5
    x = torch.where(flip_h[:, None, None, None], x.flip(3), x)
    return torch.where(flip_v[:, None, None, None], x.flip(2), x)


def affine_flip(
    x: torch.Tensor, max_shift: float = 0.3, generator: torch.Generator | None = None
) -> torch.Tensor:
    b = x.shape[0]
    dev = x.device
    angle = torch.rand(b, device=dev, generator=generator) * math.pi  # 0-180 degrees
    shift = (torch.rand(b, 2, device=dev, generator=generator) * 2 - 1) * max_shift * 2  # grid units
    cos, sin = torch.cos(angle), torch.sin(angle)
    theta = torch.stack(
        [torch.stack([cos, -sin, shift[:, 0]], 1), torch.stack([sin, cos, shift[:, 1]], 1)], 1
    )
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)
    out = F.grid_sample(x, grid, mode="bilinear", padding_mode="reflection", align_corners=False)
    flip_h = torch.rand(b, device=dev, generator=generator) < 0.5
    flip_v = torch.rand(b, device=dev, generator=generator) < 0.5
    out = torch.where(flip_h[:, None, None, None], out.flip(3), out)
    return torch.where(flip_v[:, None, None, None], out.flip(2), out)
