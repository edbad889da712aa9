"""How steady the SSL-GAN's game was in protocol runs, read from their saved training histories.

A stabiliser (a slower generator, say) is worth having if it changes the game as well as the
AUC; the AUC alone cannot tell a steadier game from sampling luck. ``ml.bench.paper`` saves each
run's per-epoch history (``runs/<cell>.history.json``: the epoch's mean losses and, at every
evaluation, the EMA model's validation AUCs); this prints, per SSL-GAN run and as means per
labeled count:

- ``d_unsup``: median over the epochs of the discriminator's real-vs-fake loss (near 0: it tells
  real from generated patches outright and the generator no longer teaches it anything);
- ``won``: the share of epochs with that loss below 0.01;
- ``g_fm``: median feature-matching loss of the generator;
- ``swing``: mean absolute change of the validation image AUC between consecutive evaluations;
- ``drawdown``: the largest fall of the validation image AUC from an earlier evaluation's value,
  the size of the collapses that checkpoint selection has to step around.

    python -m ml.bench.game docs/benchmarks/idrid-cpu-small-image-long-pubeps \\
        docs/benchmarks/idrid-cpu-small-image-long-pubeps-glr
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from ml.bench.paper import history_path, load_results

WON_BELOW = 0.01
COLUMNS = ("d_unsup", "won", "g_fm", "swing", "drawdown")


def game_stats(history: list[dict]) -> dict[str, float]:
    """The five measures above for one run's history (a list of per-epoch records)."""
    d = np.array([h["losses"]["d_unsup"] for h in history])
    g = np.array([h["losses"]["g_fm"] for h in history])
    val = np.array([h["val_image_auc"] for h in history if h.get("val_image_auc") is not None])
    swing = float(np.abs(np.diff(val)).mean()) if len(val) > 1 else 0.0
    drawdown = float((np.maximum.accumulate(val) - val).max()) if len(val) else 0.0
    return {
        "d_unsup": float(np.median(d)),
        "won": float((d < WON_BELOW).mean()),
        "g_fm": float(np.median(g)),
        "swing": swing,
        "drawdown": drawdown,
    }


def folder_stats(folder: Path) -> list[dict]:
    """One row per finished SSL-GAN run of a protocol folder (its results.json rows with a saved
    history): (labeled, sampling) and its game measures."""
    rows = []
    for r in load_results(folder):
        path = history_path(folder, r)
        if r["method"] == "ssl-gan" and path.exists():
            stats = game_stats(json.loads(path.read_text()))
            rows.append({"labeled": r["labeled"], "sampling": r["sampling"], **stats})
    if not rows:
        raise SystemExit(f"{folder}: no SSL-GAN run histories under runs/")
    return sorted(rows, key=lambda r: (r["labeled"], r["sampling"]))


def table(folder: Path, rows: list[dict]) -> str:
    head = "| labeled | sampling | " + " | ".join(COLUMNS) + " |"
    lines = [f"{folder}", "", head, "|" + "---|" * (len(COLUMNS) + 2)]
    for r in rows:
        cells = " | ".join(f"{r[c]:.3f}" for c in COLUMNS)
        lines.append(f"| {r['labeled']} | {r['sampling']} | {cells} |")
    for labeled in sorted({r["labeled"] for r in rows}):
        sel = [r for r in rows if r["labeled"] == labeled]
        means = " | ".join(f"{np.mean([r[c] for r in sel]):.3f}" for c in COLUMNS)
        lines.append(f"| {labeled} | mean of {len(sel)} | {means} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(
        prog="python -m ml.bench.game",
        description="How steady the SSL-GAN's game was in ml.bench.paper folders (runs/*.history.json).",
    )
    ap.add_argument("folders", nargs="+", type=Path, help="ml.bench.paper --out folders")
    args = ap.parse_args(argv)
    for folder in args.folders:
        print(table(folder, folder_stats(folder)), end="\n\n")


if __name__ == "__main__":
    main()
