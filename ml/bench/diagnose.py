"""Why a run's image-level AUC is what it is: lesion signal against an image-level offset.

The image score sums 64 patch sigmoids, so it can rank images well in two ways: by finding the
lesion patches, or by scoring *every* patch of a DR image differently from the patches of healthy
images (an appearance difference between the two groups). This reads the per-run test outputs
that ``ml.bench.paper`` saves (``runs/<cell>.npz``) and separates the two:

- ``within_dr_patch_auc``: lesion vs lesion-free patches inside DR images (the lesion signal).
- ``offset_auc``: lesion-free field-of-view patches of DR images vs patches of healthy images;
  0.5 means no offset, above it DR images look diseased everywhere, below it healthy ones do.
- ``image_auc_centred``: image AUC of a score with the offset taken out (the sum of each
  field-of-view patch's logit in excess of its own image's median): what lesions alone rank.
- image AUC with sum (the method) and max aggregation, and the overall patch AUC.

    python -m ml.bench.diagnose --data .cache/idrid-cohort.npz --runs docs/benchmarks/idrid-cpu-small-3x
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
from sklearn.metrics import roc_auc_score

from ml.data.colour import field_of_view
from ml.eval.metrics import sigmoid


def _auc(negatives: np.ndarray, positives: np.ndarray) -> float | None:
    if len(negatives) == 0 or len(positives) == 0:
        return None
    y = np.r_[np.zeros(len(negatives)), np.ones(len(positives))]
    return float(roc_auc_score(y, np.r_[negatives, positives]))


def diagnose_run(
    logits: np.ndarray, patch_labels: np.ndarray, image_labels: np.ndarray, fov: np.ndarray
) -> dict[str, float | None]:
    """Figures for one run's test set; ``logits`` (N, 64) diseased logits, labels -1 = unknown."""
    dr = (image_labels == 1)[:, None]
    probs = sigmoid(logits)
    known = patch_labels >= 0
    healthy_patches = logits[~dr & fov]
    lesion_free = logits[dr & fov & (patch_labels == 0)]
    lesions = logits[dr & (patch_labels == 1)]
    medians = np.array(
        [np.median(row[inside]) if inside.any() else 0.0 for row, inside in zip(logits, fov, strict=True)]
    )
    excess = np.where(fov, np.maximum(logits - medians[:, None], 0.0), 0.0).sum(axis=1)
    return {
        "image_auc_sum": float(roc_auc_score(image_labels, probs.sum(axis=1))),
        "image_auc_max": float(roc_auc_score(image_labels, logits.max(axis=1))),
        "image_auc_centred": float(roc_auc_score(image_labels, excess)),
        "patch_auc": float(roc_auc_score(patch_labels[known], logits[known])),
        "within_dr_patch_auc": _auc(lesion_free, lesions),
        "offset_auc": _auc(healthy_patches, lesion_free),
        "median_logit_healthy_images": float(np.median(healthy_patches)),
        "median_logit_dr_lesion_free": float(np.median(lesion_free)),
        "median_logit_lesions": float(np.median(lesions)),
    }


def cohort_appearance(patches: np.ndarray, image_labels: np.ndarray) -> dict[str, float]:
    """AUC for DR of each image's mean channel intensity alone: how separable the groups look."""
    names = ("red", "green", "blue")
    means = patches.astype(np.float32).mean(axis=(1, 3, 4))  # (N, 3)
    return {f"{names[c]}_mean_auc": float(roc_auc_score(image_labels, means[:, c])) for c in range(3)}


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", required=True, help="the cohort the runs used (as for ml.bench.paper)")
    ap.add_argument("--runs", required=True, type=Path, help="a ml.bench.paper output folder")
    ap.add_argument("--split-seed", type=int, default=0)
    ap.add_argument("--json", action="store_true", help="print one JSON object instead of a table")
    args = ap.parse_args(argv)

    from ml.bench.paper import load_data, split

    arrays, _ = load_data(args.data, args.runs, (168, 81), Path(".cache/patches"))
    _, _, test_ids = split(arrays, args.split_seed)
    test = arrays.select(test_ids)
    fov = field_of_view(test.patches)
    out: dict[str, dict] = {"cohort": cohort_appearance(arrays.patches, arrays.image_labels)}
    for path in sorted((args.runs / "runs").glob("*.npz")):
        run = np.load(path)
        if not np.array_equal(run["patch_labels"], test.patch_labels):
            raise SystemExit(f"{path}: its test set is not this split's (wrong --data or --split-seed)")
        out[path.stem] = diagnose_run(run["logits"], run["patch_labels"], run["image_labels"], fov)
    if args.json:
        print(json.dumps(out, indent=1))
        return
    print("cohort: " + ", ".join(f"{k} {v:.3f}" for k, v in out.pop("cohort").items()))
    keys = list(next(iter(out.values())).keys()) if out else []
    print("| run | " + " | ".join(keys) + " |")
    print("|---|" + "---|" * len(keys))
    for name, figures in out.items():
        cells = ("-" if figures[k] is None else f"{figures[k]:.3f}" for k in keys)
        print(f"| {name} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
