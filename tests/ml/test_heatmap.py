import numpy as np
import pytest

from ml.heatmap import colormap, heatmap, overlay


def test_heatmap_peaks_on_the_hot_patch_and_is_smooth():
    probs = np.zeros((8, 8), np.float32)
    probs[2, 5] = 1.0
    h = heatmap(probs, size=256)
    assert h.shape == (256, 256) and h.dtype == np.float32
    y, x = np.unravel_index(np.argmax(h), h.shape)
    assert 2 * 32 <= y < 3 * 32 and 5 * 32 <= x < 6 * 32
    assert h[0, 0] == pytest.approx(0.0, abs=1e-6)
    # Blurred: no jump of a whole step between neighbouring pixels at the patch border.
    assert np.abs(np.diff(h, axis=1)).max() < 0.2
    sharp = heatmap(probs, size=256, sigma=0)
    assert set(np.unique(sharp)) == {0.0, 1.0}


def test_colormap_endpoints_and_overlay_blend():
    cm = colormap(np.array([[0.0, 1.0]]))
    assert cm[0, 0].tolist() == [0, 0, 4] and cm[0, 1].tolist() == [252, 255, 164]
    rgb = np.full((64, 64, 3), 100, np.uint8)
    heat = np.zeros((64, 64), np.float32)
    heat[:32] = 1.0
    out = overlay(rgb, heat, alpha=0.5)
    assert out.dtype == np.uint8 and out.shape == rgb.shape
    assert (out[40:] == 100).all()  # cold pixels untouched
    np.testing.assert_array_equal(
        out[0, 0], np.rint(0.5 * 100 + 0.5 * np.array([252, 255, 164])).astype(np.uint8)
    )
    small_heat = np.ones((8, 8), np.float32)
    assert overlay(rgb, small_heat).shape == rgb.shape
