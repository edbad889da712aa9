import math
import warnings

import numpy as np
import pytest

from ml.eval.metrics import (
    auc,
    choose_threshold,
    image_scores,
    localization_auc,
    patch_auc,
    sensitivity_specificity,
    sigmoid,
)


def test_image_score_is_sum_of_patch_sigmoids():
    logits = np.array([[0.0] * 64, [10.0] * 32 + [-10.0] * 32])
    s = image_scores(logits)
    assert s[0] == pytest.approx(32.0)
    assert s[1] == pytest.approx(32.0, abs=1e-3)
    one = np.full((1, 64), -50.0)
    one[0, 5] = 50.0
    assert image_scores(one)[0] == pytest.approx(1.0, abs=1e-6)


def test_threshold_is_highest_reaching_target_sensitivity():
    rng = np.random.default_rng(0)
    scores = rng.random(40) * 64
    labels = (rng.random(40) < 0.4).astype(int)
    t = choose_threshold(scores, labels, 0.87)
    sens, _ = sensitivity_specificity(scores, labels, t)
    assert sens >= 0.87
    # Any higher candidate threshold (the next positive score above t) misses the target.
    higher = np.sort(scores[labels == 1])
    higher = higher[higher > t]
    if higher.size:
        assert sensitivity_specificity(scores, labels, higher[0])[0] < 0.87


def test_threshold_small_example():
    scores = np.array([10, 9, 8, 7, 6, 5, 4, 3, 2, 1], dtype=float)
    labels = np.array([1, 1, 0, 1, 1, 1, 1, 1, 0, 1])
    # 8 positives: ceil(0.87 * 8) = 7 must be caught -> the 7th largest positive score, 3.
    assert choose_threshold(scores, labels, 0.87) == 3.0
    assert choose_threshold(scores, labels, 0.5) == 6.0
    with pytest.raises(ValueError):
        choose_threshold(scores, np.zeros(10), 0.87)


def test_patch_auc_ignores_unknown_labels_and_auc_nan_on_one_class():
    logits = np.array([[3.0, -1.0, 5.0, 0.0]])
    labels = np.array([[1, 0, -1, 0]])
    assert patch_auc(logits, labels) == 1.0
    assert patch_auc(-logits, labels) == 0.0
    assert math.isnan(auc(np.ones(3), np.arange(3)))


def test_localization_auc_rewards_heat_on_lesions():
    masks = np.zeros((2, 16, 16), bool)
    masks[0, 2:5, 2:5] = True
    good = masks.astype(np.float32) + 0.01 * np.random.default_rng(0).random(masks.shape)
    bad = 1.0 - good
    assert localization_auc(good, masks) > 0.99
    assert localization_auc(bad, masks) < 0.01
    assert localization_auc(good, masks, max_pixels=200) > 0.95


def test_sigmoid_is_exact_and_silent_at_extreme_logits():
    # An overconfident model gives logits of +-1000: 1 / (1 + exp(1000)) overflowed and warned.
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        p = sigmoid(np.array([[-1000.0, 0.0, 1000.0]], dtype=np.float32))
        assert image_scores(np.array([[-1000.0] * 63 + [1000.0]]))[0] == 1.0
    assert p.dtype == np.float64 and p.tolist() == [[0.0, 0.5, 1.0]]
