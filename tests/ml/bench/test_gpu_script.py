"""scripts/gpu-benchmarks gets one try on a scarce GPU lease, so its whole flow runs here on the CPU."""

import json
import os
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest

from tests.ml.bench.test_paper import _toy_npz

ROOT = Path(__file__).resolve().parents[3]


@pytest.mark.slow
def test_gpu_script_writes_speed_and_both_waves_into_out(tmp_path):
    out, run = tmp_path / "out", tmp_path / "work" / "toy-run"
    env = {
        **os.environ,
        "OUT": str(out),
        "RUN": str(run),
        "DATA": str(_toy_npz(tmp_path / "c.npz")),
        "PYTHON": sys.executable,
        "PRESET": "tiny",
        "EPOCHS": "1",
        "RESNET_EPOCHS": "1",
        "SAMPLINGS": "1",
        "JOBS": "1",
        "WAVE1": "2",
        "WAVE2": "all",
        "METHODS": "ssl-gan,convnet",
        "BUDGET_S": "400",
        "SPEED_ARGS": "--iters 1 --warmup 1 --compile-mode none --device cpu --no-bf16",
        "PAPER_ARGS": "--wn-scales published --adam-eps 1e-4 --dropout 0.2,0.5",
    }
    # Another job's worker on the same host: the script must not touch it (it once ran
    # `pkill -f multiprocessing.spawn`, which killed every such process on the machine).
    bystander = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import time; time.sleep(900)",
            "multiprocessing.spawn",
            "--multiprocessing-fork",
        ]
    )
    try:
        proc = subprocess.run(
            ["bash", str(ROOT / "scripts" / "gpu-benchmarks")],
            cwd=ROOT,
            env=env,
            capture_output=True,
            text=True,
        )
        assert bystander.poll() is None, "the script killed a process that was not its own"
    finally:
        bystander.kill()
    assert proc.returncode == 0, proc.stdout + proc.stderr
    speed = json.loads((out / "train-speed.json").read_text())
    assert speed["preset"] == "tiny" and speed["naive_ms"] > 0
    # Only plain files directly under OUT: that is what a device lease sends back.
    assert sorted(p.name for p in out.iterdir()) == [
        "env.txt",
        "paper.log",
        "run.tar.gz",
        "train-speed.json",
        "train-speed.log",
    ]
    with tarfile.open(out / "run.tar.gz") as tar:
        results = json.load(tar.extractfile("toy-run/results.json"))
        meta = json.load(tar.extractfile("toy-run/meta.json"))
    # Wave 1 (2 labeled images) and wave 2 (all 12 training images of the toy cohort), both methods.
    cells = {(r["method"], r["labeled"]) for r in results}
    assert cells == {(m, n) for m in ("ssl-gan", "convnet") for n in (2, 12)}
    # PAPER_ARGS reached both waves: the folder records the recipe it was trained with.
    assert (meta["wn_scales"], meta["adam_eps"], meta["dropout"]) == ("published", 1e-4, [0.2, 0.5])
    assert all("--adam-eps 1e-4" in c for c in meta["commands"]) and len(meta["commands"]) == 2
