"""Patch labels from lesion masks: the method's rule and the lesion-fraction report.

A patch is diseased when the union of the lesion masks (MA, HE, EX, SE; never the optic disc)
covers at least ``min_pixels`` of its pixels (default 1: any lesion pixel), or, if given, at least
``min_fraction`` of its area. Masks are first brought to the 1024 grid with nearest neighbour, so
a label always refers to the same pixels the clinician sees in that patch.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from pathlib import Path

import numpy as np
from PIL import Image, ImageChops

from ml.data.patches import PatchParams

MASK_SIZE_FOR_LOCALIZATION = 256


def resize_nearest(mask: np.ndarray, height: int, width: int | None = None) -> np.ndarray:
    """Nearest-neighbour resize by pixel centres; exact when the factor is an integer."""
    width = height if width is None else width
    h, w = mask.shape
    if (h, w) == (height, width):
        return mask
    rows = np.minimum(((np.arange(height) + 0.5) * h / height).astype(np.int64), h - 1)
    cols = np.minimum(((np.arange(width) + 0.5) * w / width).astype(np.int64), w - 1)
    return mask[rows[:, None], cols[None, :]]


def read_mask(path: str | Path, size: int | None = None) -> np.ndarray:
    """A lesion mask file as bool (pixels > 0 in any channel are lesion).

    With ``size``, the mask comes back nearest-neighbour resized to size x size, done by Pillow
    before conversion to numpy: a 4288x2848 IDRiD mask then never becomes a 12-megapixel array.
    """
    with Image.open(path) as img:
        if img.mode == "P":
            img = img.convert("RGB")
        if img.mode in {"RGB", "RGBA", "LA"}:
            channels = img.split()
            img = channels[0]
            for channel in channels[1:]:
                img = ImageChops.lighter(img, channel)  # max over channels: any channel > 0
        if size is not None and img.mode in {"1", "L"} and img.size != (size, size):
            img = img.resize((size, size), Image.Resampling.NEAREST)
        arr = np.asarray(img)
    mask = arr.astype(bool) if arr.dtype == bool else arr > 0
    return resize_nearest(mask, size) if size is not None else mask


def union_mask(masks: Iterable[np.ndarray] | Mapping[str, np.ndarray], size: int) -> np.ndarray:
    """The union of lesion masks at size x size (nearest neighbour); an empty input is all healthy."""
    items = list(masks.values()) if isinstance(masks, Mapping) else list(masks)
    union = np.zeros((size, size), bool)
    for mask in items:
        union |= resize_nearest(np.asarray(mask, dtype=bool), size)
    return union


def lesion_counts(union: np.ndarray, params: PatchParams) -> np.ndarray:
    """Lesion pixels per patch, int32 (grid, grid), from a union mask at ``params.size``."""
    if union.shape != (params.size, params.size):
        union = resize_nearest(union, params.size)
    g, p = params.grid, params.patch
    return union.reshape(g, p, g, p).sum(axis=(1, 3), dtype=np.int32)


def labels_from_counts(
    counts: np.ndarray, params: PatchParams, min_pixels: int = 1, min_fraction: float | None = None
) -> np.ndarray:
    """Apply the threshold: int8 labels, 1 diseased, 0 healthy, same shape as ``counts``."""
    if min_fraction is not None:
        if not 0.0 < min_fraction <= 1.0:
            raise ValueError(f"min_fraction must be in (0, 1], got {min_fraction}")
        diseased = counts / float(params.patch * params.patch) >= min_fraction
    else:
        if min_pixels < 1:
            raise ValueError(f"min_pixels must be >= 1, got {min_pixels}")
        diseased = counts >= min_pixels
    return diseased.astype(np.int8)


def patch_labels_from_mask(
    mask: np.ndarray,
    params: PatchParams | None = None,
    min_pixels: int = 1,
    min_fraction: float | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """(labels int8 (grid, grid), lesion fraction float32 (grid, grid)) for one union lesion mask."""
    params = params or PatchParams()
    counts = lesion_counts(np.asarray(mask, dtype=bool), params)
    fraction = (counts / float(params.patch * params.patch)).astype(np.float32)
    return labels_from_counts(counts, params, min_pixels, min_fraction), fraction


def localization_mask(union: np.ndarray, size: int = MASK_SIZE_FOR_LOCALIZATION) -> np.ndarray:
    """Union mask pooled to size x size with "any lesion pixel in the block".

    Pooling, not nearest neighbour, so that microaneurysms of a few pixels survive in the
    localization ground truth.
    """
    h, w = union.shape
    if h % size or w % size:
        return resize_nearest(union, size)
    return union.reshape(size, h // size, size, w // size).any(axis=(1, 3))


def fraction_report(fractions: Iterable[np.ndarray], cutoffs: tuple[float, ...] = (0.01, 0.03, 0.1)) -> dict:
    """How much of each diseased patch is lesion, over a cohort (the method's "mostly < 3%")."""
    values = np.concatenate([np.asarray(f, dtype=np.float32).ravel() for f in fractions] or [np.zeros(0)])
    diseased = values[values > 0]
    report: dict[str, object] = {"patches": int(values.size), "diseased_patches": int(diseased.size)}
    if diseased.size:
        report["median_fraction"] = round(float(np.median(diseased)), 5)
        report["p90_fraction"] = round(float(np.quantile(diseased, 0.9)), 5)
        for cut in cutoffs:
            report[f"share_under_{cut:g}"] = round(float(np.mean(diseased < cut)), 4)
    return report
