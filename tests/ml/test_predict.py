import threading

import numpy as np
import pytest

from ml.predict import Predictor
from ml.train.toy import tiny_checkpoint, toy_patches


@pytest.fixture(scope="module")
def predictor():
    return Predictor.from_checkpoint(tiny_checkpoint(seed=0))


def test_prediction_aggregates_patch_sigmoids(predictor):
    x, _ = toy_patches(3, seed=4)
    preds = predictor.predict(x)
    logits = predictor.patch_logits(x)
    assert len(preds) == 3 and logits.shape == (3, 64)
    for p, lg in zip(preds, logits, strict=True):
        probs = 1 / (1 + np.exp(-lg.astype(np.float64)))
        assert p.score == pytest.approx(probs.sum(), rel=1e-6)
        np.testing.assert_allclose(p.probabilities, probs.reshape(8, 8), rtol=1e-5)
        assert p.diseased == (p.score >= p.threshold)
        assert p.threshold == predictor.threshold


def test_single_image_equals_batch_row(predictor):
    x, _ = toy_patches(2, seed=5)
    np.testing.assert_allclose(
        predictor.patch_logits(x[1])[0], predictor.patch_logits(x)[1], rtol=1e-5, atol=1e-5
    )


def test_wrong_shape_is_refused(predictor):
    with pytest.raises(ValueError, match="expected uint8 patches"):
        predictor.patch_logits(np.zeros((64, 3, 16, 16), np.uint8))
    with pytest.raises(ValueError):
        predictor.patch_logits(np.zeros((64, 3, 32, 32), np.float32))


def test_concurrent_callers_never_overlap(predictor):
    x, _ = toy_patches(1, seed=6)
    active, peak, errors = [0], [0], []
    model = predictor.model
    original = model.forward

    def counting_forward(*a, **k):
        active[0] += 1
        peak[0] = max(peak[0], active[0])
        try:
            return original(*a, **k)
        finally:
            active[0] -= 1

    model.forward = counting_forward
    expected = predictor.patch_logits(x)

    def worker():
        try:
            for _ in range(5):
                np.testing.assert_allclose(predictor.patch_logits(x), expected, rtol=1e-5, atol=1e-6)
        except Exception as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=worker) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    model.forward = original
    assert not errors and peak[0] == 1
