import json

import numpy as np
import pytest

from ml.bench import reference
from ml.bench.cohort_npz import load_npz
from tests.ml.bench.test_paper import _toy_npz


def test_colour_features_are_per_patch_channel_statistics():
    grids = np.zeros((1, 64, 3, 32, 32), np.uint8)
    grids[0, 5, 1] = np.arange(1024).reshape(32, 32) % 256  # one patch, green channel varies
    f = reference.colour_features(grids)
    assert f.shape == (1, 64, 21)
    assert f[0, 5, 1] == np.float32((np.arange(1024) % 256).mean())  # green mean
    assert f[0, 5, 6 + 4 * 3 + 1] == 255  # green max: the 5th percentile block, after 3 means + 3 sds
    assert not f[0, 4].any()  # an all-black patch has all-zero statistics


def test_reference_separates_easy_patches_on_the_protocols_split(tmp_path, capsys):
    data = _toy_npz(tmp_path / "c.npz", n=24)
    rows = reference.run(load_npz(data), [4, "all"], samplings=2, input_norm="none")
    assert [(r["labeled"], r["sampling"]) for r in rows] == [(4, 0), (4, 1), (14, 0), (14, 1)]
    assert all(r["dr_images_labeled"] >= 1 for r in rows)
    assert min(r["patch_auc"] for r in rows) > 0.9  # bright spots are easy for colour percentiles
    assert min(r["within_dr_patch_auc"] for r in rows) > 0.9  # and found inside the DR images too
    reference.main(
        ["--data", str(data), "--labeled", "4", "--samplings", "1", "--json", str(tmp_path / "r.json")]
    )
    out = capsys.readouterr().out
    assert "| image | 4 |" in out and "| none | 4 |" in out
    assert {r["input_norm"] for r in json.loads((tmp_path / "r.json").read_text())} == {"image", "none"}


def test_reference_refuses_an_unknown_input(tmp_path):
    with pytest.raises(SystemExit):
        reference.main(["--data", str(tmp_path / "missing.npz"), "--input-norm", "clahe"])
