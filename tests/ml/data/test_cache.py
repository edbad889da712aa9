"""load_arrays: the arrays of a cohort, cached by content and parameters."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest

from ml.data import layout
from ml.data.cache import load_arrays
from ml.data.cohort import load_source
from ml.data.patches import PatchParams, preprocess_file
from ml.synth import write_dataset

PARAMS = PatchParams(size=256, grid=8, patch=32, model_res=8)


@pytest.fixture(scope="module")
def synthetic(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("synth")
    write_dataset(out, n_healthy=4, n_dr=4, seed=9, size=256)
    return out


def test_arrays_match_direct_preprocessing(synthetic: Path, tmp_path: Path) -> None:
    cohort = load_source(synthetic)
    arrays = load_arrays(cohort, PARAMS, tmp_path / "cache")
    n = len(cohort.samples)
    assert len(arrays) == n and arrays.computed == n and arrays.cache_hits == 0
    assert arrays.patches.shape == (n, 64, 3, 8, 8) and arrays.patches.dtype == np.uint8
    assert arrays.patch_labels.shape == (n, 64) and arrays.patch_labels.dtype == np.int8
    assert arrays.masks.shape == (n, 256, 256) and arrays.masks.dtype == bool
    by_id = cohort.by_id()
    for i, sample_id in enumerate(arrays.ids):
        sample = by_id[sample_id]
        np.testing.assert_array_equal(arrays.patches[i], preprocess_file(sample.image, PARAMS).patches)
        assert arrays.image_labels[i] == int(sample.is_dr)
        if sample.is_dr:
            assert arrays.patch_labels[i].sum() > 0 and arrays.masks[i].any()
        else:
            assert arrays.patch_labels[i].sum() == 0 and not arrays.masks[i].any()
    assert np.array_equal(arrays.patch_labels == 1, arrays.fractions > 0)


def test_second_load_comes_from_the_cache_and_is_identical(synthetic: Path, tmp_path: Path) -> None:
    cohort = load_source(synthetic)
    cold = load_arrays(cohort, PARAMS, tmp_path / "cache")
    warm = load_arrays(cohort, PARAMS, tmp_path / "cache")
    assert warm.cache_hits == len(cohort.samples) and warm.computed == 0
    for field in ("patches", "patch_labels", "image_labels", "masks", "fractions"):
        np.testing.assert_array_equal(getattr(cold, field), getattr(warm, field))
    # A threshold change needs no recomputation.
    strict = load_arrays(cohort, PARAMS, tmp_path / "cache", min_fraction=0.5)
    assert strict.computed == 0 and strict.patch_labels.sum() < warm.patch_labels.sum()
    # Other parameters are another cache entry.
    other = load_arrays(cohort, PatchParams(size=128, patch=16, model_res=8), tmp_path / "cache")
    assert other.computed == len(cohort.samples)


def test_key_follows_content_not_names(synthetic: Path, tmp_path: Path) -> None:
    root = tmp_path / "copy"
    shutil.copytree(synthetic, root)
    cache = tmp_path / "cache"
    load_arrays(load_source(root), PARAMS, cache)
    # Move the whole folder: nothing to recompute.
    moved = tmp_path / "moved"
    root.rename(moved)
    assert load_arrays(load_source(moved), PARAMS, cache).computed == 0
    # Edit one mask: exactly that image is recomputed.
    mask = next((moved / layout.SEG_MASKS).rglob("IDRiD_01_MA.tif"))
    from PIL import Image

    Image.new("RGB", Image.open(mask).size, (255, 0, 0)).save(mask)
    again = load_arrays(load_source(moved), PARAMS, cache)
    assert again.computed == 1
    i = again.ids.index("segmentation/IDRiD_01")
    assert again.patch_labels[i].sum() == 64


def test_damaged_cache_entry_is_recomputed(synthetic: Path, tmp_path: Path) -> None:
    cohort = load_source(synthetic)
    cache = tmp_path / "cache"
    load_arrays(cohort, PARAMS, cache)
    entry = next(cache.rglob("*.npz"))
    entry.write_bytes(b"not a cache entry")
    assert load_arrays(cohort, PARAMS, cache).computed == 1


def test_undecodable_image_is_skipped_and_reported(synthetic: Path, tmp_path: Path) -> None:
    root = tmp_path / "copy"
    shutil.copytree(synthetic, root)
    healthy = next((root / layout.GRADING_IMAGES).rglob("*.jpg"))
    data = healthy.read_bytes()
    healthy.write_bytes(data[: len(data) // 3])  # header intact, body truncated
    cohort = load_source(root)
    arrays = load_arrays(cohort, PARAMS, None)
    assert len(arrays) == len(cohort.samples) - 1
    assert any(healthy.name in p.path and "skipped" in p.reason for p in arrays.skipped)


def test_process_pool_gives_the_same_arrays(synthetic: Path) -> None:
    cohort = load_source(synthetic)
    one = load_arrays(cohort, PARAMS, None, workers=1)
    two = load_arrays(cohort, PARAMS, None, workers=2)
    assert one.ids == two.ids
    np.testing.assert_array_equal(one.patches, two.patches)
    np.testing.assert_array_equal(one.masks, two.masks)


def test_select_rows(synthetic: Path) -> None:
    arrays = load_arrays(load_source(synthetic), PARAMS, None)
    ids = arrays.ids[::-1][:3]
    sub = arrays.select(ids)
    assert sub.ids == ids and len(sub) == 3
    np.testing.assert_array_equal(sub.patches[0], arrays.patches[len(arrays) - 1])
