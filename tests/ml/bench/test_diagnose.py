"""The run diagnosis separates lesion signal from an image-level offset."""

import numpy as np
import pytest

from ml.bench.diagnose import cohort_appearance, diagnose_run, field_of_view


def _case(offset: float, lesion_gain: float):
    """4 healthy + 4 DR images; DR images carry 4 lesion patches each; FOV = all but patch 0."""
    rng = np.random.default_rng(0)
    image_labels = np.array([0] * 4 + [1] * 4, np.int8)
    patch_labels = np.zeros((8, 64), np.int8)
    patch_labels[4:, 10:14] = 1
    logits = rng.normal(0, 0.1, (8, 64)).astype(np.float32)
    logits[4:] += offset  # every patch of a DR image
    logits[patch_labels == 1] += lesion_gain
    fov = np.ones((8, 64), bool)
    fov[:, 0] = False
    return logits, patch_labels, image_labels, fov


def test_an_offset_without_lesion_signal_shows_as_offset():
    out = diagnose_run(*_case(offset=2.0, lesion_gain=0.0))
    assert out["offset_auc"] == pytest.approx(1.0)
    assert 0.3 < out["within_dr_patch_auc"] < 0.7  # lesions are not found ...
    assert out["image_auc_sum"] == pytest.approx(1.0)  # ... yet images rank perfectly
    assert out["image_auc_centred"] < 0.8  # and without the offset they do not


def test_lesion_signal_against_an_adverse_offset():
    out = diagnose_run(*_case(offset=-1.0, lesion_gain=3.0))
    assert out["within_dr_patch_auc"] == pytest.approx(1.0)
    assert out["offset_auc"] == pytest.approx(0.0)
    assert out["image_auc_centred"] == pytest.approx(1.0)  # lesions rank DR images once centred
    medians = [out[f"median_logit_{k}"] for k in ("lesions", "healthy_images", "dr_lesion_free")]
    assert medians == sorted(medians, reverse=True)


def test_field_of_view_and_cohort_appearance():
    patches = np.zeros((4, 64, 3, 32, 32), np.uint8)
    patches[:, 1:] = 100
    patches[2:, 1:, 0] = 150  # the two "DR" images are redder
    fov = field_of_view(patches)
    assert fov.shape == (4, 64) and not fov[:, 0].any() and fov[:, 1:].all()
    looks = cohort_appearance(patches, np.array([0, 0, 1, 1]))
    assert looks["red_mean_auc"] == 1.0 and looks["green_mean_auc"] == 0.5
