"""write_dataset produces the official IDRiD folder layout, deterministically."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from PIL import Image

from ml.data import layout
from ml.synth import write_dataset


def _files(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def test_layout_and_determinism(tmp_path: Path) -> None:
    a, b = tmp_path / "a", tmp_path / "b"
    write_dataset(a, n_healthy=5, n_dr=4, seed=11, size=128)
    write_dataset(b, n_healthy=5, n_dr=4, seed=11, size=128, workers=2)
    files = _files(a)
    assert files == _files(b)

    seg_train = a / layout.SEG_IMAGES / "a. Training Set"
    seg_test = a / layout.SEG_IMAGES / "b. Testing Set"
    seg_names = sorted(p.name for p in [*seg_train.glob("*.jpg"), *seg_test.glob("*.jpg")])
    assert seg_names == ["IDRiD_01.jpg", "IDRiD_02.jpg", "IDRiD_03.jpg", "IDRiD_04.jpg"]
    assert (seg_train / "IDRiD_01.jpg").exists() and (seg_test / "IDRiD_04.jpg").exists()

    ma = a / layout.SEG_MASKS / "a. Training Set" / "1. Microaneurysms" / "IDRiD_01_MA.tif"
    mask = np.asarray(Image.open(ma))
    assert mask.shape == (128, 128, 3) and mask.max() == 255

    grading = a / layout.GRADING_IMAGES
    grading_images = list(grading.rglob("*.jpg"))
    assert len(grading_images) == 5 + 1  # healthy plus one DR photograph repeated (n_dr // 4)
    labels = (a / layout.GRADING_LABELS / layout.GRADING_LABEL_FILES["train"]).read_text().splitlines()
    assert labels[0].startswith("Image name,Retinopathy grade,Risk of macular edema ")
    grades = [
        int(line.split(",")[1])
        for split in ("train", "test")
        for line in (a / layout.GRADING_LABELS / layout.GRADING_LABEL_FILES[split])
        .read_text()
        .splitlines()[1:]
    ]
    assert sorted(grades)[:5] == [0] * 5 and sorted(grades)[5] >= 2
    marker = json.loads((a / layout.SYNTHETIC_MARKER).read_text())
    assert marker["n_healthy"] == 5 and marker["n_dr"] == 4 and marker["seed"] == 11


def test_absent_lesion_types_have_no_mask_file(tmp_path: Path) -> None:
    write_dataset(tmp_path, n_healthy=0, n_dr=6, seed=2, size=96)
    for split in layout.SPLITS.values():
        for kind, folder in layout.MASK_FOLDERS.items():
            for path in (tmp_path / layout.SEG_MASKS / split / folder).glob("*.tif"):
                assert path.name.endswith(f"_{kind}.tif")
                assert np.asarray(Image.open(path)).max() > 0  # never an empty mask file
