"""The data commands end to end: synth, then import and summary of what synth wrote."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from app.cli import cli

runner = CliRunner()


@pytest.fixture(scope="module")
def synth_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("cli") / "synth"
    result = runner.invoke(
        cli, ["synth", "--out", str(out), "--n-healthy", "5", "--n-dr", "3", "--seed", "0", "--size", "128"]
    )
    assert result.exit_code == 0, result.output
    assert "5 healthy and 3 DR" in result.output
    return out


def test_synth_refuses_a_non_empty_folder(synth_dir: Path) -> None:
    result = runner.invoke(cli, ["synth", "--out", str(synth_dir), "--n-healthy", "1", "--n-dr", "1"])
    assert result.exit_code == 2
    assert "not an empty folder" in result.output


def test_summary_json_of_synthetic_folder(synth_dir: Path) -> None:
    result = runner.invoke(cli, ["dataset", "summary", str(synth_dir), "--json"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.output)
    assert data["images"] == {"healthy": 5, "dr": 3}
    assert data["patches"]["healthy"] + data["patches"]["diseased"] == 8 * 64
    assert 0 < data["patches"]["diseased"] < 3 * 64
    assert data["skipped"] == [] and data["source"]["kind"] == "synthetic"


def test_import_fills_the_cache_and_reports(synth_dir: Path, tmp_path: Path) -> None:
    args = [
        "import-idrid",
        str(synth_dir),
        "--cache-dir",
        str(tmp_path / "cache"),
        "--workers",
        "1",
        "--json",
    ]
    first = json.loads(runner.invoke(cli, args).output)
    assert first["images"] == {"healthy": 5, "dr": 3}
    assert first["cache"]["computed"] == 8 and first["cache"]["reused"] == 0
    second = runner.invoke(cli, args[:-1])
    assert second.exit_code == 0 and "0 computed, 8 reused" in second.output


def test_wrong_folder_is_a_clear_error(tmp_path: Path) -> None:
    for args in (["dataset", "summary", str(tmp_path)], ["import-idrid", str(tmp_path / "nope")]):
        result = runner.invoke(cli, args)
        assert result.exit_code == 2
        assert "error:" in result.output


def test_bench_pipeline_runs_on_a_small_cohort(synth_dir: Path) -> None:
    result = runner.invoke(cli, ["bench", "pipeline", "--source", str(synth_dir), "--workers", "1", "--json"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.output)
    assert data["images"] == 8 and data["cold_computed"] == 8 and data["warm_cache_hits"] == 8
    assert data["cold_images_per_s"] > 0 and data["peak_rss_parent_mib"] > 0


@pytest.mark.shared_data
def test_summary_of_the_shared_data(shared_idrid: Path) -> None:
    result = runner.invoke(cli, ["dataset", "summary", str(shared_idrid), "--json"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.output)
    assert data["images"] == {"healthy": 168, "dr": 81}
    assert data["patches"]["healthy"] + data["patches"]["diseased"] == 249 * 64
    # 2,592 patches hold a lesion pixel at full resolution; the 1024 masks lose a few (docs/data.md).
    assert 2560 <= data["patches"]["diseased"] <= 2592
    assert data["skipped"] == []


def test_bench_paper_passes_its_options_to_the_protocol(monkeypatch: pytest.MonkeyPatch) -> None:
    from ml.bench import paper

    seen: list[list[str]] = []
    monkeypatch.setattr(paper, "main", seen.append)
    args = ["bench", "paper", "--data", "x.npz", "--input-norm", "none", "--pool", "max"]
    args += ["--dropout", "0,0.1", "--train-labels", "image", "--precision", "bf16", "--step", "graph"]
    args += ["--unlabeled-weight", "0.3", "--g-base", "128"]
    args += ["--fm-features", "spatial", "--wn-scales", "published", "--adam-eps", "1e-4"]
    args += ["--g-lr-scale", "0.5", "--labeled-sampling", "balanced"]
    result = runner.invoke(cli, [*args, "--out", "o"])
    assert result.exit_code == 0, result.output
    argv = seen[0]
    assert argv[argv.index("--input-norm") + 1] == "none" and argv[argv.index("--dropout") + 1] == "0,0.1"
    parsed = paper.parse(argv)  # every option the wrapper writes is one the protocol reads
    assert parsed.input_norm == "none" and parsed.data == "x.npz" and parsed.out == "o"
    assert parsed.pool == "max" and paper.folder_options(parsed)["dropout"] == [0.0, 0.1]
    assert paper.folder_options(parsed)["train_labels"] == "image"
    assert paper.folder_options(parsed)["precision"] == "bf16" and parsed.step == "graph"
    assert paper.folder_options(parsed)["unlabeled_weight"] == 0.3
    assert paper.folder_options(parsed)["g_base"] == 128
    assert paper.folder_options(parsed)["fm_features"] == "spatial"
    assert paper.folder_options(parsed)["wn_scales"] == "published"
    assert paper.folder_options(parsed)["adam_eps"] == 1e-4
    assert paper.folder_options(parsed)["g_lr_scale"] == 0.5
    assert paper.folder_options(parsed)["labeled_sampling"] == "balanced"


def test_bench_train_speed_passes_the_budget_and_profile_through(monkeypatch: pytest.MonkeyPatch) -> None:
    from ml.bench import train_speed

    seen: list[tuple] = []
    monkeypatch.setattr(train_speed, "run", lambda *a: seen.append(a) or {"device": "x"})
    args = ["bench", "train-speed", "--preset", "tiny", "--device", "cpu", "--budget-s", "45", "--profile"]
    result = runner.invoke(cli, [*args, "--json"])
    assert result.exit_code == 0, result.output
    preset, device, iters, warmup, bf16, mode, budget_s, profile = seen[0]
    assert (preset, device, budget_s, profile) == ("tiny", "cpu", 45.0, True)
    assert json.loads(result.output) == {"device": "x"}
