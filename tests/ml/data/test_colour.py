import numpy as np
import pytest

from ml.data.colour import LEVELS_PER_SD, field_of_view, standardise_colour


def _fundus(seed: int, gain: tuple[float, float, float]) -> np.ndarray:
    """One 8x8 grid: a black border (first and last row of patches) around a textured retina."""
    rng = np.random.default_rng(seed)
    base = rng.normal(100, 15, size=(64, 3, 32, 32)) * np.asarray(gain)[None, :, None, None]
    grid = np.clip(base, 0, 255).astype(np.uint8)
    grid[:8] = grid[56:] = 3  # camera background
    return grid


def test_each_image_has_the_same_colour_statistics_inside_its_field_of_view():
    a, b = _fundus(0, (1.0, 0.6, 0.3)), _fundus(1, (0.7, 0.9, 0.5))  # two "cameras"
    out = standardise_colour(np.stack([a, b]))
    fov = field_of_view(np.stack([a, b]))
    assert fov[:, 8:56].all() and not fov[:, :8].any()
    for img, inside in zip(out, fov, strict=True):
        x = img[inside].astype(np.float64)
        np.testing.assert_allclose(x.mean(axis=(0, 2, 3)), 128, atol=0.6)
        np.testing.assert_allclose(x.std(axis=(0, 2, 3)), LEVELS_PER_SD, rtol=0.03)
    # the same retina under another gain gives (almost) the same model input
    brighter = np.clip(a.astype(np.float64) * 1.3, 0, 255).astype(np.uint8)
    diff = np.abs(standardise_colour(brighter).astype(int) - out[0].astype(int))[8:56]
    assert diff.mean() < 1.0


def test_local_contrast_survives_and_order_is_kept():
    a = _fundus(2, (1.0, 1.0, 1.0))
    a[30, :, 10:14, 10:14] = 250  # a bright exudate-like spot
    out = standardise_colour(a)
    assert out.shape == a.shape and out.dtype == np.uint8
    assert out[30, :, 10:14, 10:14].min() > 200
    flat_in, flat_out = a[8:56, 1].ravel().astype(int), out[8:56, 1].ravel().astype(int)
    order = np.argsort(flat_in, kind="stable")
    assert (np.diff(flat_out[order]) >= 0).all()  # monotone per channel: nothing reordered


def test_single_grid_dark_and_flat_images_are_safe():
    dark = np.full((64, 3, 32, 32), 5, np.uint8)  # no patch counts as field of view
    flat = np.full((64, 3, 32, 32), 90, np.uint8)  # no spread at all
    assert (standardise_colour(dark) == 128).all()
    assert (standardise_colour(flat) == 128).all()
    batch = standardise_colour(np.stack([dark, _fundus(3, (1, 1, 1))]))
    np.testing.assert_array_equal(batch[1], standardise_colour(_fundus(3, (1, 1, 1))))


def test_refuses_other_dtypes_and_shapes():
    with pytest.raises(ValueError, match="uint8"):
        standardise_colour(np.zeros((64, 3, 32, 32), np.float32))
    with pytest.raises(ValueError, match="uint8"):
        standardise_colour(np.zeros((3, 32, 32), np.uint8))


def test_chunked_result_equals_image_by_image(monkeypatch):
    import ml.data.colour as colour

    grids = np.stack([_fundus(s, (1.0, 0.5 + 0.1 * s, 0.4)) for s in range(5)])
    whole = standardise_colour(grids)
    monkeypatch.setattr(colour, "CHUNK", 2)  # 2 + 2 + 1 images
    np.testing.assert_array_equal(standardise_colour(grids), whole)
    np.testing.assert_array_equal(whole[3], standardise_colour(grids[3]))
