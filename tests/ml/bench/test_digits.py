"""The digits sanity benchmark: its data, its labeled draws, and one short run of each kind."""

import json

import numpy as np
import pytest

from ml.bench import digits


def test_digits_are_32px_uint8_images_in_three_grey_channels():
    x, y = digits.load_digits_uint8()
    assert x.shape == (1797, 3, 32, 32) and x.dtype == np.uint8
    assert np.array_equal(x[:, 0], x[:, 2]) and x.max() == 255 and x.min() == 0
    assert sorted(set(y.tolist())) == list(range(10))


def test_split_and_labeled_draws():
    _, y = digits.load_digits_uint8()
    train, test = digits.split(y)
    assert len(test) == digits.TEST_SIZE and not set(train) & set(test)
    assert len(train) + len(test) == len(y)
    a = digits.labeled_subset(y[train], 5, seed=1)
    assert np.bincount(y[train][a], minlength=10).tolist() == [5] * 10
    assert np.array_equal(a, digits.labeled_subset(y[train], 5, seed=1))
    assert not np.array_equal(a, digits.labeled_subset(y[train], 5, seed=2))


def test_short_runs_report_their_figures_and_only_the_gan_arm_trains_the_real_vs_fake_term():
    rows = {
        arm: digits.run_cell(digits.Cell(per_class=2, seed=0, arm=arm, iters=40, preset="tiny"))
        for arm in ("gan-spatial", "sup")
    }
    for row in rows.values():
        assert row["labeled"] == 20 and row["unlabeled"] == 1797 - digits.TEST_SIZE
        assert 0.0 <= row["test_acc"] <= 1.0 and len(row["test_curve"]) == 10
        # one window of the game per test point; with 40 iterations the ten windows of 4 cover
        # exactly the last-100-iterations tail, so their mean is the final loss
        assert len(row["game_curve"]) == 10
        for k in ("d_unsup", "g_fm"):
            mean = sum(w[k] for w in row["game_curve"]) / 10
            assert abs(mean - row[f"final_{k}"]) < 1e-3
    # without the GAN term the real-vs-fake loss is only watched, never trained: it stays higher
    # (by less since the generator's init was fixed: a live generator keeps the trained term up too)
    assert rows["sup"]["final_d_unsup"] > rows["gan-spatial"]["final_d_unsup"]


def test_every_arm_sets_only_settings_run_cell_reads():
    # run_cell reads an arm with .get(key, default): a misspelt key would silently train the preset
    read = {"g_base", "dropout", "unlabeled_weight", "fm_features", "wn_scales", "adam_eps", "g_lr_scale"}
    for name, arm in digits.ARMS.items():
        assert set(arm) <= read, name
        assert name.startswith("sup") == (arm.get("unlabeled_weight", 1.0) == 0.0), name


def test_unknown_arms_are_refused(capsys):
    with pytest.raises(SystemExit):
        digits.main(["--arms", "gan,nope"])
    assert "unknown arm(s) nope" in capsys.readouterr().err


def test_first_seed_adds_draws_after_an_earlier_run(tmp_path, capsys):
    out = tmp_path / "rows.json"
    digits.main(
        ["--per-class", "2", "--seeds", "2", "--first-seed", "3", "--arms", "sup"]
        + ["--iters", "10", "--preset", "tiny", "--json", str(out)]
    )
    rows = json.loads(out.read_text())
    assert [r["seed"] for r in rows] == [3, 4]
    assert "| 2 | " in capsys.readouterr().out


def test_binary_task_is_one_digit_against_the_rest_scored_by_auc(tmp_path, capsys):
    _, y = digits.load_digits_uint8()
    binary = digits.task_labels(y, 8)
    assert set(binary.tolist()) == {0, 1} and binary.sum() == (y == 8).sum()
    assert digits.task_labels(y, None) is y
    out = tmp_path / "rows.json"
    digits.main(
        ["--per-class", "2", "--seeds", "1", "--arms", "gan-pub-eps", "--positive", "8"]
        + ["--iters", "20", "--preset", "tiny", "--json", str(out)]
    )
    (row,) = json.loads(out.read_text())
    assert row["positive"] == 8 and row["labeled"] == 20
    assert 0.0 <= row["test_auc"] <= 1.0 and len(row["test_curve"]) == 10
    assert "gan-pub-eps: AUC %" in capsys.readouterr().out
