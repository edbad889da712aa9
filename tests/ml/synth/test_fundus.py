"""The synthetic fundus keeps the properties the method's difficulty depends on."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage

from ml.synth import LESION_TYPES, generate


def test_same_seed_same_image_and_masks() -> None:
    a_rgb, a_masks = generate(3, size=256)
    b_rgb, b_masks = generate(3, size=256)
    np.testing.assert_array_equal(a_rgb, b_rgb)
    for t in a_masks:
        np.testing.assert_array_equal(a_masks[t], b_masks[t])
    c_rgb, _ = generate(4, size=256)
    assert np.abs(a_rgb.astype(int) - c_rgb.astype(int)).mean() > 1.0


@pytest.mark.parametrize("size", [64, 256, 300])
def test_any_resolution(size: int) -> None:
    rgb, masks = generate(0, size=size)
    assert rgb.shape == (size, size, 3) and rgb.dtype == np.uint8
    assert set(masks) == {"MA", "HE", "EX", "SE", "OD"}
    assert all(m.shape == (size, size) and m.dtype == bool for m in masks.values())


def test_healthy_has_no_lesions_but_has_a_disc() -> None:
    for seed in range(3):
        _, masks = generate(seed, size=256, dr=False)
        assert not any(masks[t].any() for t in LESION_TYPES)
        assert masks["OD"].sum() > 0.01 * 256 * 256


def test_field_of_view_is_a_circle_on_black() -> None:
    rgb, _ = generate(1, size=256)
    assert rgb[:8, :8].max() == 0 and rgb[-8:, -8:].max() == 0
    centre = rgb[96:160, 96:160].astype(float)
    assert centre[..., 0].mean() > centre[..., 1].mean() > centre[..., 2].mean()  # orange-red


@pytest.fixture(scope="module")
def dr_images() -> list[tuple[np.ndarray, dict[str, np.ndarray]]]:
    """Four DR images at the real resolution, where lesion sizes are defined."""
    return [generate(seed, size=1024, dr=True) for seed in range(4)]


def test_every_dr_image_has_visible_lesions(dr_images) -> None:
    for _, masks in dr_images:
        assert masks["HE"].any() or masks["EX"].any()
        assert not (masks["HE"] & masks["OD"]).any()


def test_lesion_sizes_follow_idrid(dr_images) -> None:
    ma_areas, he_areas = [], []
    for _, masks in dr_images:
        for kind, areas in (("MA", ma_areas), ("HE", he_areas)):
            labels, n = ndimage.label(masks[kind])
            areas += list(np.bincount(labels.ravel())[1:]) if n else []
    assert ma_areas and he_areas
    # Microaneurysms are a few pixels across at 1024; haemorrhages are blots several times larger.
    assert np.median(ma_areas) <= 50 and max(ma_areas) <= 200
    assert np.median(he_areas) >= 4 * np.median(ma_areas)


def test_lesions_are_sparse_per_patch(dr_images) -> None:
    fractions, diseased = [], []
    for _, masks in dr_images:
        union = np.logical_or.reduce([masks[t] for t in LESION_TYPES])
        frac = union.reshape(8, 128, 8, 128).mean(axis=(1, 3))
        fractions += list(frac[frac > 0])
        diseased.append((frac > 0).mean())
    # The method's data: most diseased patches have under 3% lesion pixels, and not every patch is diseased.
    assert np.mean(np.array(fractions) < 0.03) > 0.5
    assert max(diseased) < 0.8


def test_signal_survives_at_model_resolution(dr_images) -> None:
    """At the 4x4 box of one 32x32-model pixel, haemorrhages fill most of the boxes they touch and
    microaneurysms only a fraction: they fade in the model input, as in the real data."""
    coverage: dict[str, list[float]] = {"MA": [], "HE": [], "EX": []}
    for _, masks in dr_images:
        for kind, bucket in coverage.items():
            boxes = masks[kind].reshape(256, 4, 256, 4).mean(axis=(1, 3))
            bucket += list(boxes[boxes > 0])
    mean = {k: float(np.mean(v)) for k, v in coverage.items()}
    assert mean["MA"] < 0.45 and np.mean(np.array(coverage["MA"]) == 1.0) < 0.15
    assert mean["HE"] > 0.55 and mean["HE"] > mean["MA"] + 0.15
    assert mean["EX"] > mean["MA"]


def test_lesions_change_the_pixels_they_mark(dr_images) -> None:
    for rgb, masks in dr_images:
        img = rgb.astype(float)
        ring = ndimage.binary_dilation(masks["HE"], iterations=6) & ~ndimage.binary_dilation(
            masks["HE"], iterations=2
        )
        ring &= ~masks["EX"] & ~masks["OD"]
        if masks["HE"].sum() > 50:
            assert img[masks["HE"], 1].mean() < 0.8 * img[ring, 1].mean()  # haemorrhages are darker
        if masks["EX"].sum() > 50:
            assert (
                img[masks["EX"], 1].mean() > img[~masks["EX"] & (img[..., 0] > 20), 1].mean() * 1.3
            )  # yellow
