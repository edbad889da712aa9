"""Paired comparison of two protocol folders (ml.bench.compare)."""

import json
import math

import pytest

from ml.bench.compare import check_comparable, compare, load_arm, main, spread
from ml.train.config import preset

SPLIT = {"train": 149, "val": 50, "test": 50, "seed": 0}


def _folder(path, rows, split=SPLIT, data="npz:idrid-cohort.npz", **row_fields):
    path.mkdir()
    (path / "meta.json").write_text(json.dumps({"split": split, "data": data}))
    (path / "results.json").write_text(
        json.dumps(
            [
                {
                    "method": m,
                    "labeled": n,
                    "sampling": s,
                    "image_auc": v,
                    "patch_auc": v / 2,
                    "loc_auc": None,
                    **row_fields,
                }
                for m, n, s, v in rows
            ]
        )
    )
    return path


# image AUC by (labeled, sampling); sampling 3 only in B: unpaired, so left out
A_SSL = {(20, 0): 0.80, (20, 1): 0.70, (20, 2): 0.90, (10, 0): 0.60}
B_SSL = {(20, 0): 0.84, (20, 1): 0.72, (20, 2): 0.93, (20, 3): 0.10, (10, 0): 0.50}


@pytest.fixture
def arms(tmp_path):
    a_rows = [("ssl-gan", n, s, v) for (n, s), v in A_SSL.items()] + [("convnet", 20, 0, 0.99)]
    b_rows = [("ssl-gan", n, s, v) for (n, s), v in B_SSL.items()]
    return _folder(tmp_path / "a", a_rows), _folder(tmp_path / "b", b_rows)


def test_paired_difference_with_a_t_interval(arms):
    a, b = load_arm(f"{arms[0]}:ssl-gan"), load_arm(str(arms[1]))
    rows = compare(a, b)
    by_count = {r.labeled: r for r in rows}
    r20 = by_count[20]
    assert (r20.n, r20.samplings) == (3, [0, 1, 2])
    assert r20.mean_a == pytest.approx(0.80) and r20.mean_b == pytest.approx(0.83)
    diffs = [0.04, 0.02, 0.03]  # B - A per sampling
    sd = math.sqrt(sum((d - 0.03) ** 2 for d in diffs) / 2)
    assert r20.diff == pytest.approx(0.03)
    assert r20.se == pytest.approx(sd / math.sqrt(3))
    assert r20.hi - r20.diff == pytest.approx(4.302653 * r20.se, rel=1e-5)  # t(0.975, 2 df)
    assert r20.b_higher == 3
    r10 = by_count[10]
    assert (r10.n, r10.se, r10.lo, r10.b_higher) == (1, None, None, 0)
    pooled = by_count["all counts"]
    assert pooled.n == 4 and pooled.diff == pytest.approx((0.09 - 0.10) / 4)


def test_labeled_filter_drops_the_pooled_row(arms):
    rows = compare(load_arm(f"{arms[0]}:ssl-gan"), load_arm(str(arms[1])), "patch_auc", [20])
    assert [r.labeled for r in rows] == [20]
    assert rows[0].diff == pytest.approx(0.015)


def test_a_folder_with_two_methods_needs_one_named(arms):
    with pytest.raises(SystemExit, match="name one"):
        load_arm(str(arms[0]))
    with pytest.raises(SystemExit, match="no rows of method 'resnet34'"):
        load_arm(f"{arms[0]}:resnet34")


def test_folders_of_another_split_are_refused(arms, tmp_path):
    other = _folder(tmp_path / "c", [("ssl-gan", 20, 0, 0.5)], split={**SPLIT, "seed": 1})
    with pytest.raises(SystemExit, match="differ in split"):
        check_comparable(load_arm(f"{arms[0]}:ssl-gan"), load_arm(str(other)))
    with pytest.raises(SystemExit, match="share no"):
        compare(load_arm(f"{arms[0]}:convnet"), load_arm(str(other)), labeled=[10])


def test_runs_without_the_metric_are_not_paired(arms):
    with pytest.raises(SystemExit, match="with a loc_auc"):  # every row here has loc_auc None
        compare(load_arm(f"{arms[0]}:ssl-gan"), load_arm(str(arms[1])), "loc_auc")


def test_main_prints_the_table(arms, capsys):
    main([f"{arms[0]}:ssl-gan", str(arms[1]), "--labeled", "20"])
    out = capsys.readouterr().out
    assert "| 20 | 3 | 0,1,2 | 80.0 | 83.0 | +3.0 |" in out
    assert "3 of 3" in out


# One ConvNet drawn three times (train seeds 0, 1, 2) on the same labeled samplings.
DRAWS = [
    {(20, 0): 0.80, (20, 1): 0.90, (20, 2): 0.70},
    {(20, 0): 0.70, (20, 1): 0.80},  # sampling 2 not run: the arm keeps the cells all draws have
    {(20, 0): 0.75, (20, 1): 0.85, (10, 0): 0.60},
]


@pytest.fixture
def draws(tmp_path):
    return [
        _folder(
            tmp_path / f"seed{i}", [("convnet", n, s, v) for (n, s), v in d.items()], train_seed=i or None
        )
        for i, d in enumerate(DRAWS)
    ]


def test_several_folders_are_one_arm_averaged_per_cell(arms, draws):
    b = load_arm("+".join(map(str, draws)))
    assert b.method == "convnet" and sorted(b.draws) == [(20, 0), (20, 1)]
    assert b.value((20, 0), "image_auc") == pytest.approx(0.75)
    assert b.value((20, 1), "image_auc") == pytest.approx(0.85)
    [r20] = compare(load_arm(f"{arms[0]}:ssl-gan"), b)
    assert (r20.n, r20.samplings) == (2, [0, 1])
    assert r20.mean_a == pytest.approx(0.75) and r20.mean_b == pytest.approx(0.80)
    assert r20.diff == pytest.approx(0.05) and r20.b_higher == 1  # -0.05 and +0.15


def test_spread_sets_the_draws_against_the_samplings(draws):
    [s] = spread(load_arm("+".join(map(str, draws))))
    assert (s.labeled, s.draws, s.samplings) == (20, 3, 2)
    assert s.within_sd == pytest.approx(0.05)  # each cell's three draws: +-0.05 around their mean
    assert s.between_sd == pytest.approx(math.sqrt(0.005))  # cell means 0.75 and 0.85
    assert s.draw_means == pytest.approx([0.85, 0.75, 0.80])


def test_draws_must_share_the_learner_and_differ_in_seed(tmp_path, draws):
    other = _folder(tmp_path / "pub", [("convnet", 20, 0, 0.8)], train_seed=5, labeled_sampling="balanced")
    with pytest.raises(SystemExit, match="differ in labeled_sampling"):
        load_arm(f"{draws[1]}+{other}")
    again = _folder(tmp_path / "again", [("convnet", 20, 0, 0.8)])  # no train_seed recorded: seed 0
    with pytest.raises(SystemExit, match=r"seeds \[0, 0\] repeat"):
        load_arm(f"{draws[0]}+{again}")
    with pytest.raises(SystemExit, match="named twice"):
        load_arm(f"{draws[0]}+{draws[0]}")


def test_a_seed_under_other_random_streams_is_another_draw(tmp_path, draws):
    """Rows without a streams version ran before ml.train.loop.Streams: their seed 0 and a seed 0
    under version 2 are two draws; two seed-0 folders under version 2 are the same run twice."""
    new = _folder(tmp_path / "new", [("convnet", 20, 0, 0.7), ("convnet", 20, 1, 0.9)], streams=2)
    arm = load_arm(f"{draws[0]}+{new}")
    assert len(arm.draws[(20, 0)]) == 2
    again = _folder(tmp_path / "again", [("convnet", 20, 0, 0.7)], streams=2)
    with pytest.raises(SystemExit, match=r"seeds \[0, 0\] repeat under the same random streams"):
        load_arm(f"{new}+{again}")


def test_a_draw_of_another_split_is_refused(arms, draws, tmp_path):
    moved = _folder(tmp_path / "moved", [("convnet", 20, 0, 0.8)], split={**SPLIT, "seed": 1}, train_seed=7)
    with pytest.raises(SystemExit, match="differ in split"):
        check_comparable(load_arm(f"{arms[0]}:ssl-gan"), load_arm(f"{draws[0]}+{moved}"))


def test_main_prints_the_draws_spread(arms, draws, capsys):
    main([f"{arms[0]}:ssl-gan", "+".join(map(str, draws)), "--labeled", "20"])
    out = capsys.readouterr().out
    assert "| 20 | 2 | 0,1 | 75.0 | 80.0 | +5.0 |" in out
    assert "3 training draws per cell" in out
    assert "| 20 | 2 | 5.0 | 7.1 | 85.0 / 75.0 / 80.0 |" in out


def test_a_folder_from_before_an_option_reads_as_its_old_default(tmp_path):
    """The recipe's first draw predates --g-lr-scale, --labeled-sampling and --train-seed; a
    later draw that records their old defaults is the same learner, one that changed them is not."""
    old = _folder(tmp_path / "old", [("ssl-gan", 10, 0, 0.8)], wn_scales="published")
    new = _folder(
        tmp_path / "new",
        [("ssl-gan", 10, 0, 0.9)],
        wn_scales="published",
        g_lr_scale=1.0,
        labeled_sampling="tiled",
        train_seed=1,
    )
    assert load_arm(f"{old}+{new}").value((10, 0), "image_auc") == pytest.approx(0.85)
    slow_g = _folder(
        tmp_path / "slow-g", [("ssl-gan", 10, 0, 0.9)], wn_scales="published", g_lr_scale=0.33, train_seed=2
    )
    with pytest.raises(SystemExit, match="differ in g_lr_scale"):
        load_arm(f"{old}+{slow_g}")
    # a baseline row records None for the SSL-GAN's settings, and older baseline rows lack them
    conv_old = _folder(tmp_path / "conv-old", [("convnet", 10, 0, 0.7)])
    conv_new = _folder(
        tmp_path / "conv-new", [("convnet", 10, 0, 0.7)], g_lr_scale=None, adam_eps=None, train_seed=1
    )
    assert load_arm(f"{conv_old}+{conv_new}").method == "convnet"
    # a row from before --g-base ran with its preset's generator width
    small = _folder(tmp_path / "small", [("ssl-gan", 10, 0, 0.8)], preset="small", wn_scales="published")
    width = preset("small")[0].g_base
    wide = _folder(
        tmp_path / "wide",
        [("ssl-gan", 10, 0, 0.8)],
        preset="small",
        wn_scales="published",
        g_base=width,
        train_seed=1,
    )
    assert load_arm(f"{small}+{wide}").method == "ssl-gan"
    wider = _folder(
        tmp_path / "wider",
        [("ssl-gan", 10, 0, 0.8)],
        preset="small",
        wn_scales="published",
        g_base=2 * width,
        train_seed=2,
    )
    with pytest.raises(SystemExit, match="differ in g_base"):
        load_arm(f"{small}+{wider}")
