"""Preprocess a cohort once: patches, lesion counts and localization masks, cached on disk.

Preprocessing 249 photographs takes tens of seconds; every training run and benchmark needs the
same arrays. Each image's result is cached under a key made of the SHA-256 of the image file and
of its mask files plus ``PatchParams.key()``, so renaming or moving files costs nothing, while
editing a mask or changing the preprocessing recomputes exactly the images concerned. Lesion
pixel counts (not labels) are cached, so the label threshold can change without recomputation.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np

from ml.data import layout
from ml.data.cohort import Cohort, Problem, Sample
from ml.data.io import ImageLoadError
from ml.data.labels import (
    MASK_SIZE_FOR_LOCALIZATION,
    labels_from_counts,
    lesion_counts,
    localization_mask,
    read_mask,
    union_mask,
)
from ml.data.patches import PatchParams, preprocess_file


@dataclass
class CohortArrays:
    """Everything training and evaluation need, row i for ``ids[i]``."""

    ids: list[str]
    patches: np.ndarray  # uint8 (N, grid², 3, m, m)
    patch_labels: np.ndarray  # int8 (N, grid²): 1 diseased, 0 healthy
    image_labels: np.ndarray  # int8 (N,): 1 DR, 0 healthy
    masks: np.ndarray  # bool (N, 256, 256): union lesion mask for localization metrics
    fractions: np.ndarray  # float32 (N, grid²): lesion fraction of each patch
    params: PatchParams = field(default_factory=PatchParams)
    skipped: list[Problem] = field(default_factory=list)
    cache_hits: int = 0
    computed: int = 0

    def __len__(self) -> int:
        return len(self.ids)

    def select(self, ids: Sequence[str]) -> CohortArrays:
        """The rows of ``ids``, in that order (e.g. one part of a split)."""
        index = {i: k for k, i in enumerate(self.ids)}
        rows = np.array([index[i] for i in ids], dtype=np.int64)
        return replace(
            self,
            ids=list(ids),
            patches=self.patches[rows],
            patch_labels=self.patch_labels[rows],
            image_labels=self.image_labels[rows],
            masks=self.masks[rows],
            fractions=self.fractions[rows],
        )


@dataclass(frozen=True)
class _Entry:
    patches: np.ndarray
    counts: np.ndarray  # int32 (grid, grid)
    mask: np.ndarray  # bool (256, 256)


def _sha256(path: Path) -> str:
    with path.open("rb") as fh:
        return hashlib.file_digest(fh, "sha256").hexdigest()


def cache_key(sample: Sample, params: PatchParams) -> str:
    """Content hash of the image and its lesion masks, plus the preprocessing parameters."""
    h = hashlib.sha256(params.key().encode())
    h.update(_sha256(sample.image).encode())
    for kind in layout.LESION_TYPES:
        if kind in sample.masks:
            h.update(f"{kind}:{_sha256(sample.masks[kind])}".encode())
    return h.hexdigest()


def lesion_union(sample: Sample, size: int) -> np.ndarray:
    """The union of the sample's lesion masks (not OD) at size x size; all False for healthy images."""
    return union_mask(
        [read_mask(sample.masks[k], size) for k in layout.LESION_TYPES if k in sample.masks], size
    )


def _compute(sample: Sample, params: PatchParams) -> _Entry:
    pre = preprocess_file(sample.image, params, name=str(sample.image))
    union = lesion_union(sample, params.size)
    return _Entry(
        pre.patches, lesion_counts(union, params), localization_mask(union, MASK_SIZE_FOR_LOCALIZATION)
    )


def _compute_safe(args: tuple[Sample, PatchParams]) -> _Entry | Problem:
    sample, params = args
    try:
        return _compute(sample, params)
    except ImageLoadError as exc:
        return Problem(exc.name, exc.reason)
    except (OSError, ValueError) as exc:
        return Problem(str(sample.image), f"cannot preprocess ({exc})")


def _entry_path(cache_dir: Path, params: PatchParams, key: str) -> Path:
    return cache_dir / params.key() / key[:2] / f"{key}.npz"


def _read_entry(path: Path, params: PatchParams) -> _Entry | None:
    try:
        with np.load(path) as z:
            entry = _Entry(
                z["patches"], z["counts"], np.unpackbits(z["mask"])[: MASK_SIZE_FOR_LOCALIZATION**2]
            )
    except (OSError, KeyError, ValueError):
        return None  # a damaged entry is recomputed, never trusted
    if entry.patches.shape != params.patch_shape or entry.counts.shape != (params.grid, params.grid):
        return None
    return replace(entry, mask=entry.mask.astype(bool).reshape(MASK_SIZE_FOR_LOCALIZATION, -1))


def _write_entry(path: Path, entry: _Entry) -> None:
    """Atomic: write a temporary file and rename, so a crash or a parallel run never leaves half an entry."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as fh:
            np.savez(fh, patches=entry.patches, counts=entry.counts, mask=np.packbits(entry.mask))
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def load_arrays(
    cohort: Cohort,
    params: PatchParams | None = None,
    cache_dir: str | Path | None = None,
    *,
    min_pixels: int = 1,
    min_fraction: float | None = None,
    workers: int = 1,
    progress: Callable[[int, int], None] | None = None,
) -> CohortArrays:
    """Arrays for every usable sample of ``cohort``; cached per image when ``cache_dir`` is given.

    Images that fail to decode are left out and listed in ``skipped`` (with the cohort's own
    problems); the rest is returned. ``workers`` > 1 preprocesses uncached images in a process pool.
    """
    params = params or PatchParams()
    cache = Path(cache_dir) if cache_dir is not None else None
    samples = cohort.samples
    entries: list[_Entry | Problem | None] = [None] * len(samples)
    keys: list[str | None] = [None] * len(samples)
    hits = 0
    if cache is not None:
        for i, sample in enumerate(samples):
            keys[i] = cache_key(sample, params)
            entries[i] = _read_entry(_entry_path(cache, params, keys[i]), params)
            hits += entries[i] is not None
    todo = [i for i, e in enumerate(entries) if e is None]
    done = hits
    if progress:
        progress(done, len(samples))
    jobs = [(samples[i], params) for i in todo]
    if workers > 1 and len(jobs) > 1:
        with ProcessPoolExecutor(max_workers=workers) as pool:
            results = pool.map(_compute_safe, jobs, chunksize=max(1, min(8, len(jobs) // (4 * workers))))
            computed = _collect(todo, results, entries, keys, cache, params, progress, done, len(samples))
    else:
        computed = _collect(
            todo, map(_compute_safe, jobs), entries, keys, cache, params, progress, done, len(samples)
        )

    skipped = list(cohort.skipped)
    ok: list[tuple[Sample, _Entry]] = []
    for sample, entry in zip(samples, entries, strict=True):
        if isinstance(entry, _Entry):
            ok.append((sample, entry))
        elif isinstance(entry, Problem):
            skipped.append(Problem(entry.path, f"{entry.reason}: skipped"))
    n, g2 = len(ok), params.n_patches
    counts = np.stack([e.counts.reshape(g2) for _, e in ok]) if ok else np.zeros((0, g2), np.int32)
    return CohortArrays(
        ids=[s.id for s, _ in ok],
        patches=np.stack([e.patches for _, e in ok]) if ok else np.zeros((0, *params.patch_shape), np.uint8),
        patch_labels=labels_from_counts(counts, params, min_pixels, min_fraction).reshape(n, g2),
        image_labels=np.array([int(s.is_dr) for s, _ in ok], np.int8),
        masks=np.stack([e.mask for _, e in ok]) if ok else np.zeros((0, 256, 256), bool),
        fractions=(counts / float(params.patch**2)).astype(np.float32),
        params=params,
        skipped=skipped,
        cache_hits=hits,
        computed=computed,
    )


def _collect(todo, results, entries, keys, cache, params, progress, done, total) -> int:
    computed = 0
    for i, result in zip(todo, results, strict=True):
        entries[i] = result
        if isinstance(result, _Entry):
            computed += 1
            if cache is not None:
                _write_entry(_entry_path(cache, params, keys[i]), result)
        done += 1
        if progress:
            progress(done, total)
    return computed
