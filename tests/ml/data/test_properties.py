"""Property tests: the grid contract and the split hold for any sizes, not just the examples."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from ml.data.cohort import sample_labeled, split_cohort
from ml.data.labels import patch_labels_from_mask
from ml.data.patches import PatchParams, patches_from_bytes, patches_to_bytes, preprocess

SMALL = PatchParams(size=64, grid=8, patch=8, model_res=4)


@settings(max_examples=40, deadline=None)
@given(row=st.integers(0, 7), col=st.integers(0, 7), y=st.integers(0, 7), x=st.integers(0, 7))
def test_a_pixel_lands_in_patch_row_times_grid_plus_col(row: int, col: int, y: int, x: int) -> None:
    rgb = np.full((64, 64, 3), 0.5, np.float32)
    rgb[row * 8 + y, col * 8 + x] = 1.0
    out = preprocess(rgb, SMALL)
    brightest = np.unravel_index(np.argmax(out.patches[:, 0].reshape(64, -1).max(axis=1)), (64,))[0]
    assert brightest == row * 8 + col
    mask = np.zeros((64, 64), bool)
    mask[row * 8 + y, col * 8 + x] = True
    labels, _ = patch_labels_from_mask(mask, SMALL)
    assert labels[row, col] == 1 and labels.sum() == 1


@settings(max_examples=25, deadline=None)
@given(seed=st.integers(0, 2**32 - 1))
def test_codec_roundtrip(seed: int) -> None:
    patches = np.random.default_rng(seed).integers(0, 256, (64, 3, 32, 32), dtype=np.uint8)
    np.testing.assert_array_equal(patches_from_bytes(patches_to_bytes(patches)), patches)


@settings(max_examples=60, deadline=None)
@given(
    n=st.integers(3, 120),
    fractions=st.tuples(st.floats(0.1, 0.8), st.floats(0.05, 0.4)),
    seed=st.integers(0, 1000),
    stratify=st.booleans(),
)
def test_split_is_a_disjoint_partition(
    n: int, fractions: tuple[float, float], seed: int, stratify: bool
) -> None:
    ids = [f"i{k}" for k in range(n)]
    n_train = max(1, int(n * fractions[0]))
    n_val = min(n - n_train, int(n * fractions[1]))
    n_test = n - n_train - n_val
    labels = [k % 3 == 0 for k in range(n)] if stratify else None
    s = split_cohort(ids, n_train, n_val, n_test, seed, labels=labels)
    assert (len(s.train), len(s.val), len(s.test)) == (n_train, n_val, n_test)
    assert sorted(s.train + s.val + s.test) == sorted(ids)
    sub = sample_labeled(s.train, max(1, n_train // 2), k=2, seed=seed)
    for one in sub:
        assert sorted(one.labeled + one.unlabeled) == sorted(s.train)
