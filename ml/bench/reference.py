"""A non-deep reference on the paper protocol's own split and samplings: what the data allows.

Gradient-boosted trees on 21 colour statistics per patch (per channel: mean, standard deviation
and the 5/50/95/99/100th percentiles), trained on the labeled images' patches only, scored on the
test images with the method's aggregation (sum of the 64 patch probabilities). Seconds on a CPU.
It answers one question before anyone blames the data, the labels or the budget: when a deep
learner trained on the same labeled images ranks test images worse than this, the gap is the
learner's. ``--input-norm`` applies the same model input option as the networks
(``ml.data.colour``), so its effect can be seen without a GPU. Each row also carries the lesion
signal and the offset of ``ml.bench.diagnose``, so a network's can be read against what colour
percentiles find inside the DR images.

    python -m ml.bench.reference --data .cache/idrid-cohort.npz --labeled 10,20,40,80,all --samplings 5
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
from sklearn.ensemble import HistGradientBoostingClassifier
from sklearn.metrics import roc_auc_score

from ml.bench.diagnose import diagnose_run
from ml.data.colour import field_of_view, standardise_colour

PERCENTILES = (5, 50, 95, 99, 100)


def colour_features(grids: np.ndarray) -> np.ndarray:
    """uint8 (N, 64, 3, r, r) -> float32 (N, 64, 21) per-patch colour statistics."""
    n, k = grids.shape[:2]
    x = grids.reshape(n * k, 3, -1).astype(np.float32)
    q = np.percentile(x, PERCENTILES, axis=2).transpose(1, 0, 2).reshape(n * k, -1)
    return np.concatenate([x.mean(axis=2), x.std(axis=2), q], axis=1).reshape(n, k, -1)


def run(arrays, labeled: list[int | str], samplings: int, input_norm: str, split_seed: int = 0) -> list[dict]:
    """One row per (labeled, sampling): patch and image AUC on the test images."""
    from ml.bench.paper import split
    from ml.data.cohort import sample_labeled

    train_ids, _, test_ids = split(arrays, split_seed)
    row = {i: k for k, i in enumerate(arrays.ids)}
    grids = standardise_colour(arrays.patches) if input_norm == "image" else arrays.patches
    feats = colour_features(grids)
    image_labels = np.asarray(arrays.image_labels)
    train_labels = [int(image_labels[row[i]]) for i in train_ids]
    test = [row[i] for i in test_ids]
    fov = field_of_view(arrays.patches[test])
    x_test = feats[test].reshape(-1, feats.shape[-1])
    out = []
    for n in labeled:
        subsets = sample_labeled(train_ids, n, samplings, seed=split_seed, labels=train_labels)
        for s, subset in enumerate(subsets):
            rows = [row[i] for i in subset.labeled]
            clf = HistGradientBoostingClassifier(max_iter=100, random_state=s)
            clf.fit(feats[rows].reshape(-1, feats.shape[-1]), arrays.patch_labels[rows].reshape(-1))
            p = clf.predict_proba(x_test)[:, 1].reshape(len(test), -1)
            logits = np.log(np.clip(p, 1e-9, 1.0)) - np.log(np.clip(1.0 - p, 1e-9, 1.0))
            found = diagnose_run(logits, arrays.patch_labels[test], image_labels[test], fov)
            out.append(
                {
                    "method": "colour-gbm",
                    "labeled": len(subset.labeled),
                    "sampling": s,
                    "input_norm": input_norm,
                    "patch_auc": round(float(roc_auc_score(arrays.patch_labels[test].ravel(), p.ravel())), 4),
                    "image_auc": round(float(roc_auc_score(image_labels[test], p.sum(axis=1))), 4),
                    "within_dr_patch_auc": round(found["within_dr_patch_auc"], 4),
                    "offset_auc": round(found["offset_auc"], 4),
                    "dr_images_labeled": int(image_labels[rows].sum()),
                }
            )
    return out


def summary(rows: list[dict]) -> str:
    lines = [
        "| input | labeled | image AUC % (mean ± std) | patch AUC % | lesion signal | offset "
        "| per sampling (image) |",
        "|---|---|---|---|---|---|---|",
    ]
    for key in sorted({(r["input_norm"], r["labeled"]) for r in rows}):
        sel = [r for r in rows if (r["input_norm"], r["labeled"]) == key]
        img = np.array([r["image_auc"] for r in sel]) * 100
        pat = np.array([r["patch_auc"] for r in sel]) * 100
        lesion = np.mean([r["within_dr_patch_auc"] for r in sel])
        offset = np.mean([r["offset_auc"] for r in sel])
        lines.append(
            f"| {key[0]} | {key[1]} | {img.mean():.1f} ± {img.std():.1f} | {pat.mean():.1f} | "
            f"{lesion:.3f} | {offset:.3f} | "
            f"{' '.join(f'{v:.1f}' for v in img)} |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    from ml.bench.cohort_npz import load_npz

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", required=True, help="a cohort .npz (python -m ml.bench.cohort_npz)")
    ap.add_argument("--labeled", default="10,20,40,80,all")
    ap.add_argument("--samplings", type=int, default=5)
    ap.add_argument("--input-norm", dest="input_norm", default="none,image", help="none, image or both")
    ap.add_argument("--json", type=Path, default=None, help="also write the rows to this file")
    args = ap.parse_args(argv)
    norms = args.input_norm.split(",")
    if not set(norms) <= {"none", "image"}:
        ap.error(f"--input-norm takes none, image or none,image, not {args.input_norm!r}")
    arrays = load_npz(args.data)
    labeled = [x if x == "all" else int(x) for x in args.labeled.split(",")]
    rows = [r for norm in norms for r in run(arrays, labeled, args.samplings, norm)]
    print(summary(rows))
    if args.json:
        args.json.write_text(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
