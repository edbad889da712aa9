"""The split by image and the labeled-subset sampler of the few-label experiments."""

from __future__ import annotations

import pytest

from ml.data.cohort import paper_split_sizes, sample_labeled, split_cohort

IDS = [f"img{i:03d}" for i in range(249)]
LABELS = [1 if i < 81 else 0 for i in range(249)]


def test_paper_split_is_disjoint_complete_and_seeded() -> None:
    s = split_cohort(IDS, 149, 50, 50, seed=0)
    assert (len(s.train), len(s.val), len(s.test)) == (149, 50, 50)
    assert (
        set(s.train).isdisjoint(s.val) and set(s.train).isdisjoint(s.test) and set(s.val).isdisjoint(s.test)
    )
    assert set(s.train) | set(s.val) | set(s.test) == set(IDS)
    assert s == split_cohort(IDS, 149, 50, 50, seed=0)
    assert s.test != split_cohort(IDS, 149, 50, 50, seed=1).test


def test_stratified_split_keeps_the_class_mix() -> None:
    s = split_cohort(IDS, 149, 50, 50, seed=3, labels=LABELS)
    dr = {i for i, y in zip(IDS, LABELS, strict=True) if y}
    assert (len(s.train), len(s.val), len(s.test)) == (149, 50, 50)
    assert set(s.train) | set(s.val) | set(s.test) == set(IDS)
    for part, size in ((s.val, 50), (s.test, 50)):
        assert abs(sum(i in dr for i in part) - round(size * 81 / 249)) <= 1


def test_split_refuses_impossible_sizes_and_duplicates() -> None:
    with pytest.raises(ValueError):
        split_cohort(IDS[:10], 8, 2, 1, seed=0)
    with pytest.raises(ValueError):
        split_cohort(["a", "a", "b"], 1, 1, 1, seed=0)


def test_paper_split_sizes() -> None:
    assert paper_split_sizes(249) == (149, 50, 50)
    train, val, test = paper_split_sizes(30)
    assert train + val + test == 30 and val == test == 6


@pytest.mark.parametrize("n", [10, 20, 40, 80])
def test_labeled_sampler(n: int) -> None:
    train = split_cohort(IDS, 149, 50, 50, seed=0).train
    samplings = sample_labeled(train, n, k=5, seed=7)
    assert len(samplings) == 5
    for s in samplings:
        assert len(s.labeled) == n and len(set(s.labeled)) == n
        assert set(s.labeled).isdisjoint(s.unlabeled)
        assert set(s.labeled) | set(s.unlabeled) == set(train)
    assert len({tuple(sorted(s.labeled)) for s in samplings}) == 5  # k different samplings
    assert samplings == sample_labeled(train, n, k=5, seed=7)
    assert samplings != sample_labeled(train, n, k=5, seed=8)


def test_labeled_sampler_all_and_bad_n() -> None:
    train = IDS[:149]
    for n in ("all", None, 500):
        out = sample_labeled(train, n, k=3, seed=0)
        assert len(out) == 3 and all(s.labeled == train and s.unlabeled == [] for s in out)
    with pytest.raises(ValueError):
        sample_labeled(train, 0, k=1, seed=0)
    with pytest.raises(ValueError):
        sample_labeled(train, 10, k=0, seed=0)


def test_labeled_sampler_with_labels_always_has_both_classes() -> None:
    # One DR image in 100: a plain random pick of 2 would usually miss it.
    ids = [f"x{i}" for i in range(100)]
    labels = [1 if i == 42 else 0 for i in range(100)]
    for s in sample_labeled(ids, 2, k=20, seed=0, labels=labels):
        assert "x42" in s.labeled and len(s.labeled) == 2
