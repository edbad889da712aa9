"""Heatmaps of the per-patch probabilities, as the method's interpretation figures show them.

The 8x8 probability map is upsampled (each patch becomes a block of its pixels) and blurred with a
Gaussian, so hot spots are smooth and no sharper than the evidence (one patch). Colour mapping is
a small built-in lookup table, so serving a heatmap needs neither matplotlib nor a GPU.
"""

from __future__ import annotations

import numpy as np
from PIL import Image
from scipy.ndimage import gaussian_filter

# "inferno"-like anchors: black -> purple -> red -> orange -> pale yellow.
_ANCHORS = np.array(
    [
        [0, 0, 4],
        [66, 10, 104],
        [147, 38, 103],
        [221, 81, 58],
        [252, 165, 10],
        [252, 255, 164],
    ],
    dtype=np.float32,
)


def heatmap(probs: np.ndarray, size: int = 1024, sigma: float | None = None) -> np.ndarray:
    """(g, g) probabilities -> float32 (size, size) in [0, 1]; sigma defaults to a quarter patch."""
    p = np.clip(np.asarray(probs, dtype=np.float32), 0.0, 1.0)
    if p.ndim != 2 or p.shape[0] != p.shape[1]:
        raise ValueError(f"expected a square probability grid, got shape {p.shape}")
    g = p.shape[0]
    cell = max(1, size // g)
    up = np.kron(p, np.ones((cell, cell), dtype=np.float32))
    if up.shape[0] != size:
        up = np.asarray(Image.fromarray(up, mode="F").resize((size, size), Image.Resampling.NEAREST))
    s = cell / 4.0 if sigma is None else sigma
    out = gaussian_filter(up, sigma=s, mode="nearest") if s > 0 else up
    return np.clip(out, 0.0, 1.0).astype(np.float32)


def colormap(heat: np.ndarray) -> np.ndarray:
    """float [0, 1] (H, W) -> uint8 RGB (H, W, 3) by piecewise-linear interpolation of the anchors."""
    h = np.clip(np.asarray(heat, dtype=np.float32), 0.0, 1.0) * (len(_ANCHORS) - 1)
    lo = np.floor(h).astype(np.int64).clip(0, len(_ANCHORS) - 2)
    t = (h - lo)[..., None]
    rgb = _ANCHORS[lo] * (1 - t) + _ANCHORS[lo + 1] * t
    return np.rint(rgb).astype(np.uint8)


def overlay(rgb: np.ndarray, heat: np.ndarray, alpha: float = 0.5) -> np.ndarray:
    """Blend the colour-mapped heat over the image; opacity grows with the heat (cold stays clear).

    ``rgb`` is uint8 or float in [0, 1]; ``heat`` is resized to the image when sizes differ.
    """
    img = np.asarray(rgb)
    img = img.astype(np.float32) if img.dtype == np.uint8 else np.clip(img.astype(np.float32), 0, 1) * 255.0
    if img.ndim != 3 or img.shape[2] != 3:
        raise ValueError(f"expected an RGB image (H, W, 3), got shape {img.shape}")
    hm = np.asarray(heat, dtype=np.float32)
    if hm.shape != img.shape[:2]:
        hm = np.asarray(
            Image.fromarray(hm, mode="F").resize((img.shape[1], img.shape[0]), Image.Resampling.BILINEAR)
        )
    hm = np.clip(hm, 0.0, 1.0)
    a = (float(alpha) * hm)[..., None]
    out = img * (1 - a) + colormap(hm).astype(np.float32) * a
    return np.rint(np.clip(out, 0, 255)).astype(np.uint8)
