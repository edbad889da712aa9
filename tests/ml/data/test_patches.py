"""The patch grid contract: indexing, normalisation, downsampling and the storage codec."""

from __future__ import annotations

import numpy as np
import pytest

from ml.data.patches import (
    PatchParams,
    _block_sums,
    crop_patch,
    patch_box,
    patches_from_bytes,
    patches_to_bytes,
    preprocess,
    to_model_input,
)


def test_default_params_are_the_method() -> None:
    p = PatchParams()
    assert (p.size, p.grid, p.patch, p.model_res) == (1024, 8, 128, 32)
    assert p.patch_shape == (64, 3, 32, 32)
    assert p.key() != PatchParams(size=512, patch=64).key()


@pytest.mark.parametrize("kw", [{"size": 1000}, {"model_res": 30}, {"grid": 0}])
def test_inconsistent_params_are_refused(kw: dict[str, int]) -> None:
    with pytest.raises(ValueError):
        PatchParams(**kw)


def test_patch_index_is_row_major_top_to_bottom_left_to_right() -> None:
    # Paint every grid cell with its own flat index in the red channel.
    p = PatchParams()
    rgb = np.zeros((1024, 1024, 3), np.float32)
    for row in range(8):
        for col in range(8):
            rgb[row * 128 : (row + 1) * 128, col * 128 : (col + 1) * 128, 0] = (row * 8 + col + 1) / 64
    out = preprocess(rgb, p)
    assert out.patches.shape == (64, 3, 32, 32) and out.patches.dtype == np.uint8
    for k in range(64):
        assert np.all(out.patches[k, 0] == round(255 * (k + 1) / 64))
        assert np.all(out.patches[k, 1:] == 0)
    assert patch_box(2, 5) == (256, 640, 384, 768)


def test_normalisation_divides_by_the_max_over_all_channels() -> None:
    rgb = np.zeros((1024, 1024, 3), np.float32)
    rgb[..., 0] = 0.25
    rgb[:128, :128, 2] = 0.5  # the brightest value lives in the blue channel of patch 0
    out = preprocess(rgb)
    assert out.rgb8.max() == 255 and out.rgb8.dtype == np.uint8
    assert out.rgb8[500, 500, 0] == 128  # round(255 * 0.5)
    assert np.all(out.patches[1, 0] == 128)  # round(255 * 0.5)


def test_normalisation_is_scale_invariant_and_black_stays_black() -> None:
    rng = np.random.default_rng(1)
    rgb = rng.uniform(0, 0.6, (256, 256, 3)).astype(np.float32)
    a = preprocess(rgb, PatchParams(size=256, patch=32, model_res=8))
    b = preprocess(rgb * 0.5, PatchParams(size=256, patch=32, model_res=8))
    np.testing.assert_array_equal(a.patches, b.patches)
    black = preprocess(np.zeros((64, 64, 3), np.float32), PatchParams(size=64, patch=8, model_res=4))
    assert black.patches.max() == 0 and black.rgb8.max() == 0


def test_box_downsampling_averages_each_block() -> None:
    p = PatchParams(size=64, grid=2, patch=32, model_res=8)  # blocks of 4x4
    rgb = np.zeros((64, 64, 3), np.float32)
    rgb[0:4:2, 0:4, :] = 1.0  # half of the first 4x4 block is white
    out = preprocess(rgb, p)
    assert out.patches[0, 0, 0, 0] == 128  # round(255 * 0.5)
    assert out.patches[0, 0, 0, 1] == 0


def test_resize_is_plain_and_aspect_not_kept() -> None:
    rgb = np.zeros((300, 700, 3), np.float32)
    rgb[:, :350, 1] = 1.0  # left half green
    out = preprocess(rgb, PatchParams(size=256, patch=32, model_res=8))
    assert out.rgb8.shape == (256, 256, 3)
    assert out.rgb8[128, 10, 1] == 255 and out.rgb8[128, 245, 1] == 0


def test_uint8_input_is_accepted() -> None:
    rgb = np.full((64, 64, 3), 100, np.uint8)
    out = preprocess(rgb, PatchParams(size=64, patch=8, model_res=4))
    assert np.all(out.patches == 255) and np.all(out.rgb8 == 255)


def test_uint8_and_float_paths_compute_the_same_patches() -> None:
    """The integer path (8-bit uploads) and the float path (16-bit, alpha) agree to one level.

    They differ only where 255 * mean / max lands on a half (ties round differently in float).
    """
    rng = np.random.default_rng(3)
    rgb = rng.integers(0, 200, (1024, 1024, 3), dtype=np.uint8)  # max below 255: the LUT is used
    fast = preprocess(rgb)
    slow = preprocess(rgb.astype(np.float32) / 255.0)
    assert fast.patches.dtype == np.uint8 and fast.patches.shape == (64, 3, 32, 32)
    assert np.abs(fast.patches.astype(int) - slow.patches).max() <= 1
    assert (fast.patches != slow.patches).mean() < 0.01
    assert np.abs(fast.rgb8.astype(int) - slow.rgb8).max() <= 1
    top = int(rgb.max())
    assert fast.rgb8[0, 0, 0] == round(255 * int(rgb[0, 0, 0]) / top)
    # Exact block means: a 4x4 block of 0/255 stripes is 127.5 -> 128 (to even), never 127.
    stripes = np.zeros((1024, 1024, 3), np.uint8)
    stripes[::2] = 255
    assert np.all(preprocess(stripes).patches == 128)


@pytest.mark.parametrize("factor", [2, 4, 16, 17])
def test_integer_block_sums_are_exact(factor: int) -> None:
    """The request path's block sums equal a direct sum over each block, also at the uint16 edge."""
    rng = np.random.default_rng(factor)
    rgb = rng.integers(0, 256, (8 * factor, 4 * factor, 3), dtype=np.uint8)
    rgb[:factor, :factor] = 255  # one block of factor² x 255: 65280 at 16, past uint16 at 17
    want = rgb.astype(np.int64).reshape(8, factor, 4, factor, 3).sum(axis=(1, 3))
    got = _block_sums(rgb, factor)
    assert got.shape == (8, 4, 3) and got.dtype == (np.uint16 if factor <= 16 else np.uint32)
    assert np.array_equal(got, want)


def test_uint8_input_of_another_size_is_resized_in_8_bits() -> None:
    rgb = np.zeros((300, 700, 3), np.uint8)
    rgb[:, :350, 1] = 180
    out = preprocess(rgb, PatchParams(size=256, patch=32, model_res=8))
    assert out.rgb8.shape == (256, 256, 3)
    assert out.rgb8[128, 10, 1] == 255 and out.rgb8[128, 245, 1] == 0
    assert out.patches[0, 1].min() == 255 and out.patches[7, 1].max() == 0


def test_codec_roundtrip_and_length_check() -> None:
    rng = np.random.default_rng(0)
    patches = rng.integers(0, 256, (64, 3, 32, 32), dtype=np.uint8)
    data = patches_to_bytes(patches)
    assert len(data) == 64 * 3 * 32 * 32
    back = patches_from_bytes(data)
    np.testing.assert_array_equal(back, patches)
    assert back.flags.writeable
    with pytest.raises(ValueError, match="bytes"):
        patches_from_bytes(data[:-1])
    with pytest.raises(ValueError):
        patches_to_bytes(patches.astype(np.float32))


def test_model_input_range() -> None:
    x = to_model_input(np.array([0, 255], np.uint8))
    np.testing.assert_allclose(x, [-1.0, 1.0])


def test_crop_patch_returns_the_display_tile() -> None:
    rng = np.random.default_rng(2)
    out = preprocess(rng.uniform(0, 1, (1024, 1024, 3)).astype(np.float32))
    tile = crop_patch(out, 3, 6)
    assert tile.shape == (128, 128, 3) and tile.dtype == np.uint8
    np.testing.assert_array_equal(tile, out.rgb8[384:512, 768:896])
    # The model patch is the tile box-averaged: consistent with what the clinician is shown.
    approx = tile.reshape(32, 4, 32, 4, 3).mean(axis=(1, 3)).transpose(2, 0, 1)
    assert np.abs(approx - out.patches[3 * 8 + 6]).max() <= 1.0
    with pytest.raises(IndexError):
        crop_patch(out, 8, 0)
