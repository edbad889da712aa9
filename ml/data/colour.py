"""Per-image colour standardisation of the patch grid: the model input option ``input_norm="image"``.

The method's preprocessing only divides an image by its maximum, so two cameras, exposures or
pigmentations give the same retina different colours. In the method's IDRiD cohort that is not
noise but a confound: its DR images come from one IDRiD subset and its healthy images from
another, and an image's mean red alone separates them (AUC 0.68). With 10 labeled images every
learner ranks images by how they look as a whole rather than by their lesions
(``ml.bench.diagnose``). Standardising each channel over the image's own field of view leaves
what is bright or dark *within* the retina (exudates, haemorrhages, vessels) and takes the
whole-image colour away.

It needs all 64 patches of one image, which both training and prediction have, so it is applied
to the stored uint8 patches right before the model (never to what is stored): a voxel becomes
``128 + LEVELS_PER_SD * (x - mean) / sd`` with the image's field-of-view mean and standard
deviation per channel, rounded and clipped to uint8. 25 levels per standard deviation keep the
stored resolution (a channel's spread inside the retina is 20-40 levels) and clip at about
+-5 sd, which on the IDRiD cohort touches 0.08 % of field-of-view voxels.
"""

from __future__ import annotations

import numpy as np

FOV_MIN_MEAN = 20.0  # mean uint8 intensity below which a patch is camera background
LEVELS_PER_SD = 25.0
MIN_SD = 1.0  # a flat image (no spread) is shifted, not blown up
CHUNK = 32  # images per step: ~100 MB of float temporaries whatever the training set's size


def field_of_view(patches: np.ndarray) -> np.ndarray:
    """(N, 64) bool: patches inside the fundus (not the black border), from uint8 patches."""
    return patches.reshape(*patches.shape[:2], -1).mean(axis=2) > FOV_MIN_MEAN


def standardise_colour(patches: np.ndarray) -> np.ndarray:
    """uint8 (N, 64, 3, r, r) or (64, 3, r, r) -> the same shape, each image's channels standardised.

    Statistics come from the image's field-of-view patches (all patches when none qualifies, e.g.
    a very dark photograph), so the black border around the fundus does not dilute them.
    """
    arr = np.asarray(patches)
    if arr.dtype != np.uint8 or arr.ndim not in (4, 5):
        raise ValueError(
            f"expected uint8 patches (N, 64, 3, r, r) or (64, 3, r, r), got {arr.dtype} {arr.shape}"
        )
    single = arr.ndim == 4
    grids = arr[None] if single else arr
    out = np.empty_like(grids)
    for i in range(0, len(grids), CHUNK):  # float temporaries of a few images at a time, not all
        out[i : i + CHUNK] = _standardise(grids[i : i + CHUNK])
    return out[0] if single else out


def _standardise(grids: np.ndarray) -> np.ndarray:
    fov = field_of_view(grids)
    fov[~fov.any(axis=1)] = True
    x = grids.astype(np.float32)
    weight = fov[:, :, None, None, None].astype(np.float32)
    count = weight.sum(axis=1) * x.shape[-1] * x.shape[-2]  # (N, 1, 1, 1)
    mean = (x * weight).sum(axis=(1, 3, 4), keepdims=True) / count[:, None]
    var = (((x - mean) ** 2) * weight).sum(axis=(1, 3, 4), keepdims=True) / count[:, None]
    scale = LEVELS_PER_SD / np.maximum(np.sqrt(var), MIN_SD)
    return np.clip(np.rint(128.0 + (x - mean) * scale), 0, 255).astype(np.uint8)
