"""Reading the cohort from a synthetic folder in the official layout, broken copies and ../shared."""

from __future__ import annotations

import csv
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from ml.data import layout
from ml.data.cohort import load_source
from ml.synth import write_dataset

SEG_TRAIN = f"{layout.SEG_IMAGES}/a. Training Set"
MASK_TRAIN = f"{layout.SEG_MASKS}/a. Training Set"


@pytest.fixture(scope="module")
def synthetic(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("synth")
    write_dataset(out, n_healthy=6, n_dr=4, seed=5, size=128)
    return out


def _copy(src: Path, tmp_path: Path) -> Path:
    dst = tmp_path / "copy"
    shutil.copytree(src, dst)
    return dst


def test_synthetic_folder_reads_as_the_cohort(synthetic: Path) -> None:
    cohort = load_source(synthetic)
    assert cohort.source == "synthetic"
    assert (cohort.n_healthy, cohort.n_dr) == (6, 4)
    assert cohort.skipped == []
    dr = [s for s in cohort.samples if s.is_dr]
    assert all(s.id.startswith("segmentation/") and "MA" in s.masks or "HE" in s.masks for s in dr)
    healthy = [s for s in cohort.samples if not s.is_dr]
    assert all(s.id.startswith("grading/") and s.grade == 0 and s.masks == {} for s in healthy)
    # The repeated DR photographs of the grading set (grades 2-4) are not taken as healthy.
    assert len(list((synthetic / layout.GRADING_IMAGES).rglob("*.jpg"))) == 7
    assert len(set(cohort.ids)) == len(cohort.ids)


def test_wrapping_folder_and_official_detection(synthetic: Path, tmp_path: Path) -> None:
    wrapped = tmp_path / "download"
    shutil.copytree(synthetic, wrapped / "IDRiD")
    (wrapped / "IDRiD" / layout.SYNTHETIC_MARKER).unlink()
    cohort = load_source(wrapped)
    assert cohort.source == "idrid" and (cohort.n_healthy, cohort.n_dr) == (6, 4)


def test_unknown_folder_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="not an IDRiD download"):
        load_source(tmp_path)
    with pytest.raises(FileNotFoundError):
        load_source(tmp_path / "missing")


def test_problems_are_reported_per_file_and_the_rest_imported(synthetic: Path, tmp_path: Path) -> None:
    root = _copy(synthetic, tmp_path)
    seg = root / SEG_TRAIN
    # 1. an unreadable DR image
    (seg / "IDRiD_01.jpg").write_bytes(b"garbage")
    # 2. a mask whose size does not match its image
    he = root / MASK_TRAIN / "2. Haemorrhages" / "IDRiD_02_HE.tif"
    ma = root / MASK_TRAIN / "1. Microaneurysms" / "IDRiD_02_MA.tif"
    Image.new("RGB", (64, 64)).save(he if he.exists() else ma)
    # 3. a mask without image
    Image.new("RGB", (128, 128)).save(root / MASK_TRAIN / "1. Microaneurysms" / "IDRiD_77_MA.tif")
    # 4. a grade-0 row whose image is gone, 5. a bad grade row
    labels = root / layout.GRADING_LABELS / layout.GRADING_LABEL_FILES["train"]
    rows = list(csv.reader(labels.open()))
    healthy_name = next(r[0] for r in rows[1:] if r[1] == "0")
    (root / layout.GRADING_IMAGES / "a. Training Set" / f"{healthy_name}.jpg").unlink()
    with labels.open("a") as fh:
        fh.write("IDRiD_999,seven,0\n")

    cohort = load_source(root)
    reasons = {Path(p.path.split(":")[0]).name: p.reason for p in cohort.skipped}
    assert "unreadable image" in reasons["IDRiD_01.jpg"]
    assert "mask is 64x64 but its image is 128x128" in reasons[(he if he.exists() else ma).name]
    assert "without a matching" in reasons["IDRiD_77_MA.tif"]
    assert "missing" in reasons[f"{healthy_name}.jpg"]
    assert any("grade 0-4" in p.reason for p in cohort.skipped)
    assert (cohort.n_dr, cohort.n_healthy) == (2, 5)


def test_missing_grading_csv_is_reported(synthetic: Path, tmp_path: Path) -> None:
    root = _copy(synthetic, tmp_path)
    shutil.rmtree(root / layout.GRADING_LABELS)
    cohort = load_source(root)
    assert cohort.n_healthy == 0 and cohort.n_dr == 4
    assert sum("labels CSV missing" in p.reason for p in cohort.skipped) == 2


def test_segmentation_image_without_lesion_masks_is_skipped(synthetic: Path, tmp_path: Path) -> None:
    root = _copy(synthetic, tmp_path)
    for path in (root / MASK_TRAIN).rglob("IDRiD_01_*.tif"):
        if not path.stem.endswith("_OD"):
            path.unlink()
    cohort = load_source(root)
    assert cohort.n_dr == 3
    assert any("no lesion mask" in p.reason for p in cohort.skipped)


@pytest.mark.shared_data
def test_prepared_shared_layout(shared_idrid: Path) -> None:
    cohort = load_source(shared_idrid)
    assert cohort.source == "prepared"
    assert (cohort.n_healthy, cohort.n_dr) == (168, 81)
    assert cohort.skipped == []
    by_id = cohort.by_id()
    # The two sets reuse numbers: IDRiD_01 (segmentation) and IDRiD_001 (grading) are different photographs.
    assert by_id["segmentation/IDRiD_01"].is_dr
    assert {s.split for s in cohort.samples if not s.is_dr} == {"train", "test"}
    assert sum(s.split == "test" for s in cohort.samples if not s.is_dr) == 34
    assert np.mean([("SE" in s.masks) for s in cohort.samples if s.is_dr]) == pytest.approx(40 / 81)
    # also found from the folder above
    assert load_source(shared_idrid.parent).n_dr == 81
