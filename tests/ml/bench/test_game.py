"""How steady the SSL-GAN's game was, read from protocol histories (ml.bench.game)."""

import json

import pytest

from ml.bench import game, paper
from tests.ml.bench.test_paper import _toy_npz


def _epoch(epoch: int, d_unsup: float, g_fm: float, val: float | None = None) -> dict:
    return {"epoch": epoch, "losses": {"d_unsup": d_unsup, "g_fm": g_fm}, "val_image_auc": val}


def test_game_measures_follow_their_definitions():
    history = [
        _epoch(1, 0.30, 2.0),
        _epoch(2, 0.005, 4.0, 0.70),
        _epoch(3, 0.20, 1.0),
        _epoch(4, 0.001, 3.0, 0.80),
        _epoch(5, 0.40, 5.0, 0.55),  # falls 0.25 from the best value before it
        _epoch(6, 0.10, 6.0, 0.75),
    ]
    got = game.game_stats(history)
    assert got["won"] == pytest.approx(2 / 6)  # two epochs below 0.01
    assert got["d_unsup"] == pytest.approx(0.15) and got["g_fm"] == pytest.approx(3.5)
    assert got["swing"] == pytest.approx((0.10 + 0.25 + 0.20) / 3)
    assert got["drawdown"] == pytest.approx(0.25)


def test_a_rising_curve_has_no_drawdown():
    history = [_epoch(e, 0.3, 1.0, 0.5 + e / 100) for e in range(1, 6)]
    assert game.game_stats(history)["drawdown"] == 0.0


def test_reads_the_histories_a_protocol_run_saves(tmp_path, capsys):
    out = tmp_path / "run"
    argv = ["--data", str(_toy_npz(tmp_path / "c.npz")), "--labeled", "4", "--samplings", "2"]
    argv += ["--methods", "ssl-gan,convnet", "--preset", "tiny", "--epochs", "2", "--device", "cpu"]
    paper.main([*argv, "--out", str(out)])
    rows = game.folder_stats(out)
    assert [(r["labeled"], r["sampling"]) for r in rows] == [(4, 0), (4, 1)]  # the ConvNet's are skipped
    history = json.loads((out / "runs" / "ssl-gan_4_1.history.json").read_text())
    assert rows[1]["g_fm"] == pytest.approx(game.game_stats(history)["g_fm"]) and rows[1]["g_fm"] > 0
    game.main([str(out)])
    printed = capsys.readouterr().out
    assert "| 4 | 1 |" in printed and "| 4 | mean of 2 |" in printed


def test_a_folder_without_ssl_gan_runs_is_refused(tmp_path):
    (tmp_path / "runs").mkdir()
    with pytest.raises(SystemExit, match="no SSL-GAN run histories"):
        game.folder_stats(tmp_path)
