"""The method's cohort: which images, their image-level labels, the split and the labeled subsets.

The reference method used 249 IDRiD images: the 168 grade-0 images of the grading set (healthy)
and the 81 segmentation images (DR, with lesion masks), split by image into 149 training, 50
validation and 50 test images. Few-label experiments then take ``n`` labeled images from the
training cohort (n = 10, 20, 40, 80, all), ``k`` random samplings each, the rest unlabeled.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

PAPER_SPLIT = (149, 50, 50)
PAPER_LABELED_SIZES: tuple[int | str, ...] = (10, 20, 40, 80, "all")


@dataclass(frozen=True)
class Problem:
    """A file the import skipped or could not use, and why (shown to the user per file)."""

    path: str
    reason: str

    def to_dict(self) -> dict[str, str]:
        return {"file": self.path, "reason": self.reason}


@dataclass(frozen=True)
class Sample:
    """One image of the cohort. ``masks`` maps lesion type (MA/HE/EX/SE, maybe OD) to its file."""

    id: str
    image: Path
    is_dr: bool
    masks: dict[str, Path] = field(default_factory=dict)
    grade: int | None = None
    split: str | None = None  # the official train/test set the file came from, not our split


@dataclass
class Cohort:
    """The samples of one source, with what was skipped on the way and which kind of source it was."""

    source: str  # "idrid" (official download), "synthetic" or "prepared" (../shared/data/idrid)
    root: Path
    samples: list[Sample]
    skipped: list[Problem] = field(default_factory=list)

    @property
    def ids(self) -> list[str]:
        return [s.id for s in self.samples]

    @property
    def n_dr(self) -> int:
        return sum(s.is_dr for s in self.samples)

    @property
    def n_healthy(self) -> int:
        return len(self.samples) - self.n_dr

    def by_id(self) -> dict[str, Sample]:
        return {s.id: s for s in self.samples}

    def image_labels(self, ids: Sequence[str] | None = None) -> np.ndarray:
        lookup = self.by_id()
        return np.array([int(lookup[i].is_dr) for i in (ids if ids is not None else self.ids)], np.int8)


def load_source(path: str | Path) -> Cohort:
    """Read a cohort from an official IDRiD download, a synthetic folder or the prepared layout.

    The kind is detected from the folder contents; ``path`` may also be the folder above (an
    unzipped download with one wrapping folder, or ``../shared/data``).
    """
    from ml.data import idrid

    return idrid.read_any(Path(path))


@dataclass(frozen=True)
class Split:
    train: list[str]
    val: list[str]
    test: list[str]


def paper_split_sizes(n: int) -> tuple[int, int, int]:
    """The 149/50/50 proportions of the paper scaled to a cohort of ``n`` images (exact for 249)."""
    if n == sum(PAPER_SPLIT):
        return PAPER_SPLIT
    n_val = n_test = max(1, round(n * 50 / 249)) if n >= 3 else 0
    return n - n_val - n_test, n_val, n_test


def split_cohort(
    ids: Sequence[str],
    n_train: int,
    n_val: int,
    n_test: int,
    seed: int,
    labels: Sequence[int] | None = None,
) -> Split:
    """A seeded random split by image; disjoint. With ``labels``, each part keeps the class mix.

    Splitting by image (never by patch) keeps all 64 patches of a photograph on one side.
    """
    ids = list(ids)
    if len(set(ids)) != len(ids):
        raise ValueError("image ids must be unique")
    if min(n_train, n_val, n_test) < 0 or n_train + n_val + n_test > len(ids):
        raise ValueError(f"cannot split {len(ids)} images into {n_train}/{n_val}/{n_test}")
    rng = np.random.default_rng([seed, 1])
    if labels is None:
        order = [ids[i] for i in rng.permutation(len(ids))]
    else:
        if len(labels) != len(ids):
            raise ValueError("labels must have one entry per id")
        # Spread each class evenly along one random order (rank within class, jittered, over the
        # class size): any contiguous cut then holds each class in proportion, within one image.
        keys = np.empty(len(ids))
        for cls in set(labels):
            members = np.flatnonzero(np.asarray(labels) == cls)
            members = members[rng.permutation(len(members))]
            keys[members] = (np.arange(len(members)) + rng.uniform(0, 1, len(members))) / len(members)
        order = [ids[i] for i in np.argsort(keys, kind="stable")]
    a, b = n_train, n_train + n_val
    parts = [order[:a], order[a:b], order[b : b + n_test]]
    return Split(*[[p[i] for i in rng.permutation(len(p))] for p in parts])


@dataclass(frozen=True)
class LabeledSubset:
    """One sampling: the images whose patch labels the learner sees, and the unlabeled rest."""

    labeled: list[str]
    unlabeled: list[str]


def sample_labeled(
    train_ids: Sequence[str],
    n: int | str | None,
    k: int,
    seed: int,
    labels: Sequence[int] | None = None,
) -> list[LabeledSubset]:
    """``k`` seeded samplings of ``n`` labeled training images; ``n`` = "all"/None takes them all.

    With ``labels`` (image labels of ``train_ids``), every sampling holds at least one image of
    each class when n allows, since a labeled set without a DR image cannot teach "diseased".
    For n = all every sampling is the whole training cohort: the k runs differ only in the
    training seed.
    """
    train_ids = list(train_ids)
    if k < 1:
        raise ValueError("k must be >= 1")
    if n is None or n == "all" or (isinstance(n, int) and n >= len(train_ids)):
        return [LabeledSubset(list(train_ids), []) for _ in range(k)]
    if not isinstance(n, int) or n < 1:
        raise ValueError(f"n must be a positive integer or 'all', got {n!r}")
    out = []
    for j in range(k):
        rng = np.random.default_rng([seed, n, j])
        order = list(rng.permutation(len(train_ids)))
        chosen = _stratified_pick(order, list(labels), n) if labels is not None else order[:n]
        chosen_set = set(chosen)
        out.append(
            LabeledSubset(
                [train_ids[i] for i in chosen],
                [train_ids[i] for i in range(len(train_ids)) if i not in chosen_set],
            )
        )
    return out


def _stratified_pick(order: list[int], labels: list[int], n: int) -> list[int]:
    """Random pick of n indices (in ``order``) that contains every class when n >= #classes."""
    firsts: list[int] = []
    seen: set[int] = set()
    for i in order:
        if labels[i] not in seen:
            seen.add(labels[i])
            firsts.append(i)
    picked = firsts[:n]
    rest = [i for i in order if i not in set(picked)]
    return picked + rest[: n - len(picked)]
