"""Two protocol runs side by side, paired by sampling: is the difference more than sampling luck?

An ablation (``--unlabeled-weight 0`` against the published 1, one method against another)
trains on the same labeled images in both arms when the split and the sampling index agree, and
the spread between samplings (which DR images happen to be labeled) is several times any effect
worth finding. Comparing means of two folders hides that; pairing by (labeled, sampling) removes
it. For each labeled count this prints the two means, the mean paired difference B - A, its
standard error and 95 % t-interval, and in how many pairs B was higher.

    python -m ml.bench.compare docs/benchmarks/idrid-cpu-small-image-long:ssl-gan \\
        docs/benchmarks/idrid-cpu-small-image-long-ablations/uw0-20:ssl-gan

An arm is ``FOLDER[:METHOD]``; without a method the folder must hold exactly one. Folders whose
split or data differ are refused: their sampling k is not the same labeled images.

An arm may also be several folders joined by ``+``: the same learner trained again with other
``--train-seed`` values (same labeled images, other initialisation, batch order and
augmentation). Each (labeled, sampling) cell is then the mean over the draws, on the cells every
folder ran, so that one lucky draw of a control does not decide a comparison; the table adds how
far the draws of one cell lie apart (the training noise) beside the spread between samplings.
The folders must agree on every learner setting and differ in their training seeds.

    python -m ml.bench.compare docs/benchmarks/idrid-cpu-small-image-long-pubeps:ssl-gan \
        'docs/benchmarks/idrid-cpu-small-image-long-pubeps-tiled-convnet+docs/benchmarks/idrid-cpu-small-image-long-ablations/convnet-seed1'
"""

from __future__ import annotations

import argparse
import json
import math
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
from scipy import stats

from ml.bench.paper import load_results, row_setting

METRICS = ("image_auc", "patch_auc", "loc_auc")
# What a results.json row records of the learner: the folders of one multi-draw arm must agree on
# all of it (a setting a method ignores is recorded as None, so a ConvNet folder run with
# --wn-scales published still matches one run without).
LEARNER = (
    "preset",
    "epochs",
    "iterations",
    "input_norm",
    "pool",
    "dropout",
    "train_labels",
    "precision",
    "unlabeled_weight",
    "g_base",
    "fm_features",
    "wn_scales",
    "adam_eps",
    "g_lr_scale",
    "labeled_sampling",
    "model_res",
)


@dataclass(frozen=True)
class Arm:
    folders: tuple[Path, ...]
    method: str
    # (labeled, sampling) -> one row per folder (training draw), in the folders' order
    draws: dict[tuple[int, int], list[dict]]

    @property
    def folder(self) -> Path:
        return self.folders[0]

    @property
    def name(self) -> str:
        return "+".join(f.name for f in self.folders) + f":{self.method}"

    def value(self, key: tuple[int, int], metric: str) -> float | None:
        """The cell's metric, the mean over the draws (None when any draw lacks it)."""
        values = [r.get(metric) for r in self.draws[key]]
        return None if None in values else float(np.mean(values))


@dataclass(frozen=True)
class Paired:
    labeled: int | str  # a count, or "all counts" for the pooled row
    n: int
    samplings: list[int]
    mean_a: float
    mean_b: float
    diff: float  # mean of B - A over the pairs
    se: float | None  # None with a single pair
    lo: float | None
    hi: float | None
    b_higher: int


def load_arm(spec: str) -> Arm:
    """``FOLDER[+FOLDER...][:METHOD]`` -> the method's rows, keyed by (labeled, sampling); with
    several folders only the cells all of them ran, each holding one row per folder."""
    folders_text, _, method = spec.partition(":")
    folders = tuple(Path(f) for f in folders_text.split("+"))
    if len(set(folders)) != len(folders):
        raise SystemExit(f"{spec}: a folder is named twice")
    per_folder = []
    for folder in folders:
        results = load_results(folder)
        if not results:
            raise SystemExit(f"{folder}: no results.json with rows")
        methods = sorted({r["method"] for r in results})
        if not method:
            if len(methods) != 1:
                raise SystemExit(f"{folder} holds {', '.join(methods)}: name one as {folder}:METHOD")
            method = methods[0]
        rows = {(r["labeled"], r["sampling"]): r for r in results if r["method"] == method}
        if not rows:
            raise SystemExit(f"{folder}: no rows of method {method!r} (it holds {', '.join(methods)})")
        per_folder.append(rows)
    keys = set.intersection(*(set(rows) for rows in per_folder))
    if not keys:
        raise SystemExit(f"{spec}: its folders share no (labeled, sampling) cell")
    draws = {k: [rows[k] for rows in per_folder] for k in sorted(keys)}
    arm = Arm(folders, method, draws)
    if len(folders) > 1:
        _check_draws(arm)
    return arm


def _check_draws(arm: Arm) -> None:
    """Several folders are one learner drawn again: same settings, distinct training seeds."""
    for key, rows in arm.draws.items():
        for setting in LEARNER:
            values = [row_setting(r, setting) for r in rows]
            if any(v != values[0] for v in values):
                raise SystemExit(
                    f"{arm.name}: its folders differ in {setting} ({values}) at labeled {key[0]}, "
                    f"sampling {key[1]}; only the training seed may differ between draws"
                )
        # A draw is a training seed under one version of the trainers' streams.
        seeds = [(row_setting(r, "train_seed") or 0, row_setting(r, "streams")) for r in rows]
        if len(set(seeds)) != len(seeds):
            shown = [s for s, _ in seeds]
            raise SystemExit(
                f"{arm.name}: training seeds {shown} repeat under the same random streams; the same "
                "seed on the same machine is the same run, not another draw"
            )


def check_comparable(a: Arm, b: Arm) -> None:
    """Refuse arms whose sampling k is not the same labeled images (other split or data)."""
    folders = [*a.folders, *b.folders]
    metas = [_meta(folder) for folder in folders]
    for key in ("split", "data"):
        for folder, meta in zip(folders[1:], metas[1:], strict=True):
            if meta.get(key) != metas[0].get(key):
                raise SystemExit(
                    f"the arms differ in {key}: {folders[0]} has {metas[0].get(key)}, "
                    f"{folder} has {meta.get(key)}; their samplings are not paired"
                )


def _meta(folder: Path) -> dict:
    path = folder / "meta.json"
    if not path.exists():
        raise SystemExit(f"{folder}: no meta.json, so its split cannot be checked")
    return json.loads(path.read_text())


def paired(values_a: list[float], values_b: list[float], labeled: int | str, samplings: list[int]) -> Paired:
    """Mean paired difference with a t-interval (the pairs' spread, n - 1 degrees of freedom)."""
    a, b = np.asarray(values_a, float), np.asarray(values_b, float)
    d = b - a
    n = len(d)
    se = lo = hi = None
    if n > 1:
        se = float(d.std(ddof=1) / math.sqrt(n))
        half = float(stats.t.ppf(0.975, n - 1)) * se
        lo, hi = float(d.mean()) - half, float(d.mean()) + half
    return Paired(
        labeled,
        n,
        samplings,
        float(a.mean()),
        float(b.mean()),
        float(d.mean()),
        se,
        lo,
        hi,
        int((d > 0).sum()),
    )


def compare(a: Arm, b: Arm, metric: str = "image_auc", labeled: list[int] | None = None) -> list[Paired]:
    """One row per labeled count both arms have (pairs only where both ran that sampling and have
    the metric: a run without lesion masks has no localization AUC), and a pooled row over every
    pair when there is more than one count."""
    common = sorted(
        k
        for k in a.draws.keys() & b.draws.keys()
        if (labeled is None or k[0] in labeled) and None not in (a.value(k, metric), b.value(k, metric))
    )
    if not common:
        raise SystemExit(f"{a.name} and {b.name} share no (labeled, sampling) cell with a {metric}")
    out = []
    for count in sorted({n for n, _ in common}):
        keys = [k for k in common if k[0] == count]
        out.append(
            paired(
                [a.value(k, metric) for k in keys],
                [b.value(k, metric) for k in keys],
                count,
                [s for _, s in keys],
            )
        )
    if len(out) > 1:
        out.append(
            paired(
                [a.value(k, metric) for k in common], [b.value(k, metric) for k in common], "all counts", []
            )
        )
    return out


@dataclass(frozen=True)
class Spread:
    labeled: int
    draws: int
    samplings: int
    within_sd: float  # root mean square over samplings of the draws' sd in one cell (training noise)
    between_sd: float  # sd over samplings of the cells' means (which images were labeled)
    draw_means: list[float]  # each draw's mean over the samplings, in the folders' order


def spread(arm: Arm, metric: str = "image_auc", labeled: list[int] | None = None) -> list[Spread]:
    """How much a multi-draw arm's training seed moves a cell, against the samplings' spread."""
    out = []
    for count in sorted({n for n, _ in arm.draws if labeled is None or n in labeled}):
        cells = [
            [r[metric] for r in rows]
            for (n, _), rows in arm.draws.items()
            if n == count and None not in (r.get(metric) for r in rows)
        ]
        if not cells:
            continue
        v = np.asarray(cells, float)  # samplings x draws
        within = float(np.sqrt(np.mean(v.var(axis=1, ddof=1)))) if v.shape[1] > 1 else 0.0
        between = float(v.mean(axis=1).std(ddof=1)) if v.shape[0] > 1 else 0.0
        out.append(Spread(count, v.shape[1], v.shape[0], within, between, [float(m) for m in v.mean(axis=0)]))
    return out


def table(rows: list[Paired], a: Arm, b: Arm, metric: str) -> str:
    """Markdown, in percentage points like the protocol's tables."""
    lines = [
        f"A = {a.name}, B = {b.name}, {metric} in %, paired by sampling",
        "",
        "| labeled | pairs | samplings | A | B | B - A | SE | 95 % interval | B higher |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        ci = "-" if r.lo is None else f"{100 * r.lo:+.1f} to {100 * r.hi:+.1f}"
        se = "-" if r.se is None else f"{100 * r.se:.1f}"
        samplings = ",".join(map(str, r.samplings)) or "-"
        lines.append(
            f"| {r.labeled} | {r.n} | {samplings} | {100 * r.mean_a:.1f} | {100 * r.mean_b:.1f} | "
            f"{100 * r.diff:+.1f} | {se} | {ci} | {r.b_higher} of {r.n} |"
        )
    counts = [r.labeled for r in rows if isinstance(r.labeled, int)]
    for arm in (a, b):
        if len(arm.folders) > 1:
            lines += ["", spread_table(spread(arm, metric, counts), arm)]
    return "\n".join(lines)


def spread_table(rows: list[Spread], arm: Arm) -> str:
    lines = [
        f"{arm.name}: {len(arm.folders)} training draws per cell, averaged above",
        "",
        "| labeled | samplings | sd between draws | sd between samplings | each draw's mean |",
        "|---|---|---|---|---|",
    ]
    for r in rows:
        means = " / ".join(f"{100 * m:.1f}" for m in r.draw_means)
        lines.append(
            f"| {r.labeled} | {r.samplings} | {100 * r.within_sd:.1f} | {100 * r.between_sd:.1f} | {means} |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument(
        "a",
        help="the reference arm, FOLDER[:METHOD] (a ml.bench.paper output folder), or "
        "FOLDER+FOLDER...[:METHOD] for one learner's runs with other --train-seed values, averaged per cell",
    )
    ap.add_argument("b", help="the arm compared with it, in the same form; differences are B - A")
    ap.add_argument("--metric", choices=METRICS, default="image_auc")
    ap.add_argument("--labeled", help="only these labeled counts, e.g. 10,20 (149 for 'all')")
    ap.add_argument("--json", action="store_true", help="print the rows as JSON instead of a table")
    args = ap.parse_args(argv)

    a, b = load_arm(args.a), load_arm(args.b)
    check_comparable(a, b)
    counts = [int(x) for x in args.labeled.split(",")] if args.labeled else None
    rows = compare(a, b, args.metric, counts)
    print(json.dumps([asdict(r) for r in rows], indent=1) if args.json else table(rows, a, b, args.metric))


if __name__ == "__main__":
    main()
