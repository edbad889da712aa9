"""Write a synthetic cohort in the folder layout of the official IDRiD download.

The importer then reads a synthetic folder and a real download through the same code. Like the
real data: DR images with per-lesion ``.tif`` masks in "A. Segmentation" (a lesion type absent
from an image has no file), grade-0 images in "B. Disease Grading" with the official CSV quirks
(header with a trailing space, empty columns), the two sets numbered independently, and a few DR
photographs repeated in the grading set under other numbers with grades 2-4, so that a reader
that joins the sets on the number, or takes every grading image as healthy, is caught.
"""

from __future__ import annotations

import json
import shutil
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np
from PIL import Image

from ml.data import layout
from ml.synth.fundus import MASK_TYPES, generate

GENERATOR_VERSION = 1
JPEG_QUALITY = 92


def _image_seed(seed: int, kind: int, index: int) -> int:
    return int(np.random.SeedSequence([seed, kind, index]).generate_state(1)[0])


def _write_dr(args: tuple[Path, str, str, int, int]) -> None:
    out, split, name, seed, size = args
    rgb, masks = generate(seed, size=size, dr=True)
    folder = out / layout.SEG_IMAGES / layout.SPLITS[split]
    Image.fromarray(rgb).save(folder / f"{name}.jpg", quality=JPEG_QUALITY)
    for kind in MASK_TYPES:
        mask = masks[kind]
        if not mask.any():
            continue  # as in IDRiD: a lesion type that is absent has no file
        red = np.zeros((*mask.shape, 3), np.uint8)
        red[mask, 0] = 255
        path = (
            out / layout.SEG_MASKS / layout.SPLITS[split] / layout.MASK_FOLDERS[kind] / f"{name}_{kind}.tif"
        )
        Image.fromarray(red).save(path, compression="tiff_lzw")


def _write_healthy(args: tuple[Path, str, str, int, int]) -> None:
    out, split, name, seed, size = args
    rgb, _ = generate(seed, size=size, dr=False)
    Image.fromarray(rgb).save(
        out / layout.GRADING_IMAGES / layout.SPLITS[split] / f"{name}.jpg", quality=JPEG_QUALITY
    )


def _train_count(n: int, fraction: float) -> int:
    return min(n, max(1 if n > 1 else n, round(n * fraction)))


def write_dataset(
    out: str | Path,
    n_healthy: int,
    n_dr: int,
    seed: int = 0,
    *,
    size: int = 1024,
    workers: int = 1,
) -> dict[str, object]:
    """Generate ``n_healthy`` grade-0 and ``n_dr`` DR images under ``out``; returns the summary.

    Deterministic: the same arguments give byte-identical images and masks. ``workers`` > 1 uses a
    process pool (generation is CPU-bound numpy).
    """
    if n_healthy < 0 or n_dr < 0:
        raise ValueError("image counts must be >= 0")
    out = Path(out)
    rng = np.random.default_rng([seed, 7])
    for split in layout.SPLITS.values():
        (out / layout.SEG_IMAGES / split).mkdir(parents=True, exist_ok=True)
        (out / layout.GRADING_IMAGES / split).mkdir(parents=True, exist_ok=True)
        for folder in layout.MASK_FOLDERS.values():
            (out / layout.SEG_MASKS / split / folder).mkdir(parents=True, exist_ok=True)
    (out / layout.GRADING_LABELS).mkdir(parents=True, exist_ok=True)

    # Segmentation set: IDRiD_01.. with the official 54/27 train/test proportion.
    n_dr_train = _train_count(n_dr, 54 / 81)
    dr_jobs = [
        (out, "train" if i < n_dr_train else "test", f"IDRiD_{i + 1:02d}", _image_seed(seed, 1, i), size)
        for i in range(n_dr)
    ]

    # Grading set: healthy images plus a quarter of the DR photographs again, shuffled, numbered
    # from 001 in each split independently of the segmentation numbers.
    n_repeat = n_dr // 4
    entries: list[tuple[str, int, int]] = [("healthy", i, 0) for i in range(n_healthy)]
    entries += [("repeat", i, int(rng.integers(2, 5))) for i in range(n_repeat)]
    order = rng.permutation(len(entries))
    entries = [entries[k] for k in order]
    n_grading_train = _train_count(len(entries), 413 / 516)
    healthy_jobs = []
    copies: list[tuple[int, str, str]] = []
    rows: dict[str, list[tuple[str, int, int]]] = {"train": [], "test": []}
    for pos, (kind, index, grade) in enumerate(entries):
        split = "train" if pos < n_grading_train else "test"
        name = f"IDRiD_{len(rows[split]) + 1:03d}"
        rows[split].append((name, grade, 0 if grade == 0 else int(rng.integers(0, 3))))
        if kind == "healthy":
            healthy_jobs.append((out, split, name, _image_seed(seed, 0, index), size))
        else:
            copies.append((index, split, name))

    if workers > 1:
        with ProcessPoolExecutor(max_workers=workers) as pool:
            list(pool.map(_write_dr, dr_jobs, chunksize=4))
            list(pool.map(_write_healthy, healthy_jobs, chunksize=4))
    else:
        for job in dr_jobs:
            _write_dr(job)
        for job in healthy_jobs:
            _write_healthy(job)

    for index, split, name in copies:
        _, dr_split, dr_name, _, _ = dr_jobs[index]
        src = out / layout.SEG_IMAGES / layout.SPLITS[dr_split] / f"{dr_name}.jpg"
        shutil.copyfile(src, out / layout.GRADING_IMAGES / layout.SPLITS[split] / f"{name}.jpg")

    for split, split_rows in rows.items():
        # The official CSVs: a trailing space in one header and, in the training file, empty columns.
        pad = ",,,,,,,,," if split == "train" else ""
        lines = [f"Image name,Retinopathy grade,Risk of macular edema {pad}"]
        lines += [f"{name},{grade},{risk}{pad}" for name, grade, risk in split_rows]
        path = out / layout.GRADING_LABELS / layout.GRADING_LABEL_FILES[split]
        path.write_text("\n".join(lines) + "\n", encoding="utf-8")

    summary: dict[str, object] = {
        "generator": "patchscreen.synth",
        "version": GENERATOR_VERSION,
        "seed": seed,
        "size": size,
        "n_healthy": n_healthy,
        "n_dr": n_dr,
        "n_grading_repeats_of_dr": n_repeat,
    }
    (out / layout.SYNTHETIC_MARKER).write_text(json.dumps(summary, indent=2) + "\n", encoding="utf-8")
    return summary
