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
"""

from __future__ import annotations

import argparse
import json
import math
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
from scipy import stats

from ml.bench.paper import load_results

METRICS = ("image_auc", "patch_auc", "loc_auc")


@dataclass(frozen=True)
class Arm:
    folder: Path
    method: str
    rows: dict[tuple[int, int], dict]  # (labeled, sampling) -> results.json row

    @property
    def name(self) -> str:
        return f"{self.folder.name}:{self.method}"


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
    """``FOLDER[:METHOD]`` -> the folder's rows of that method, keyed by (labeled, sampling)."""
    folder_text, _, method = spec.partition(":")
    folder = Path(folder_text)
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
    return Arm(folder, method, rows)


def check_comparable(a: Arm, b: Arm) -> None:
    """Refuse arms whose sampling k is not the same labeled images (other split or data)."""
    metas = [_meta(arm.folder) for arm in (a, b)]
    for key in ("split", "data"):
        if metas[0].get(key) != metas[1].get(key):
            raise SystemExit(
                f"the arms differ in {key}: {a.folder} has {metas[0].get(key)}, "
                f"{b.folder} has {metas[1].get(key)}; their samplings are not paired"
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
        for k in a.rows.keys() & b.rows.keys()
        if (labeled is None or k[0] in labeled) and None not in (a.rows[k].get(metric), b.rows[k].get(metric))
    )
    if not common:
        raise SystemExit(f"{a.name} and {b.name} share no (labeled, sampling) cell with a {metric}")
    out = []
    for count in sorted({n for n, _ in common}):
        keys = [k for k in common if k[0] == count]
        out.append(
            paired(
                [a.rows[k][metric] for k in keys],
                [b.rows[k][metric] for k in keys],
                count,
                [s for _, s in keys],
            )
        )
    if len(out) > 1:
        out.append(
            paired([a.rows[k][metric] for k in common], [b.rows[k][metric] for k in common], "all counts", [])
        )
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
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("a", help="the reference arm, FOLDER[:METHOD] (a ml.bench.paper output folder)")
    ap.add_argument("b", help="the arm compared with it, FOLDER[:METHOD]; differences are B - A")
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
