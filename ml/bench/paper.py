"""The method's evaluation protocol (its Tables 1 and 2) as a resumable benchmark.

For each labeled count and sampling, every method is trained on the labeled training images (the
SSL-GAN also on all training images as unlabeled data), selected and thresholded on the
validation cohort, and evaluated on the test cohort with its EMA weights: patch AUC, image AUC
and the pixel-level localization AUC of its heatmaps against the lesion masks.

    python -m ml.bench.paper --data shared --labeled 10,20,40,80,all --samplings 5 \\
        --methods ssl-gan,convnet,resnet34 --preset full --epochs 1200 --device auto --out DIR

``--data``: ``synthetic`` (generated into DIR/data), ``shared`` (../shared/data/idrid), a cohort
folder, or a ``.npz`` written by ``python -m ml.bench.cohort_npz``. Finished cells are recorded
in DIR/results.json as they finish and are never recomputed; ``--jobs`` runs cells in parallel
processes (several small runs share one GPU well; on a CPU use one thread per job).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import multiprocessing
import os
import platform
import time
from collections.abc import Iterable
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from ml.train.config import (
    FM_FEATURES,
    INPUT_NORMS,
    LABELED_SAMPLINGS,
    POOLS,
    PRECISIONS,
    STEPS,
    STREAMS_VERSION,
    WN_SCALES,
)

PUBLISHED_IMAGE_AUC = {  # the method's image-level AUC (%) at 10/20/40/80/149 labeled images
    "ssl-gan": {10: 84.5, 20: 89.0, 40: 94.7, 80: 98.5, 149: 99.1},
    "convnet": {10: 71.1, 20: 81.4, 40: 87.4, 80: 94.5, 149: 97.8},
    "resnet34": {10: 71.3, 20: 79.4, 40: 80.5, 80: 84.2, 149: 98.9},
}
SHARED_IDRID = Path(__file__).resolve().parents[2].parent / "shared" / "data" / "idrid"
# --train-seed N adds N times this to every run's seed (1000 x sampling + labeled, below 100000).
TRAIN_SEED_STRIDE = 100_000


@dataclass(frozen=True)
class Cell:
    method: str
    labeled: int
    sampling: int

    @property
    def name(self) -> str:
        return f"{self.method}_{self.labeled}_{self.sampling}"


# ---------------------------------------------------------------- data


def load_data(spec: str, out: Path, synthetic_counts: tuple[int, int], cache: Path) -> tuple[Any, str]:
    """CohortArrays for ``spec`` and a short description of where they came from."""
    from ml.data.cache import load_arrays
    from ml.data.cohort import load_source

    if spec.endswith(".npz"):
        from ml.bench.cohort_npz import load_npz

        return load_npz(spec), f"npz:{Path(spec).name}"
    if spec == "synthetic":
        from ml.synth import write_dataset

        folder = out / "data"
        if not (folder / "summary-done").exists():
            write_dataset(folder, synthetic_counts[0], synthetic_counts[1], seed=0, workers=1)
            (folder / "summary-done").write_text("ok\n")
        return load_arrays(load_source(folder), cache_dir=cache), (
            f"synthetic:{synthetic_counts[0]}+{synthetic_counts[1]}"
        )
    path = SHARED_IDRID if spec == "shared" else Path(spec)
    return load_arrays(load_source(path), cache_dir=cache), f"idrid:{path.name}"


def split(arrays: Any, seed: int) -> tuple[list[str], list[str], list[str]]:
    from ml.data.cohort import paper_split_sizes, split_cohort

    s = split_cohort(
        arrays.ids, *paper_split_sizes(len(arrays.ids)), seed=seed, labels=list(arrays.image_labels)
    )
    return s.train, s.val, s.test


def train_data(
    arrays: Any, train_ids: list[str], labeled_ids: list[str], val_ids: list[str], rule: str = "lesion"
):
    """The training set of one cell. ``rule`` says what a labeled image's patches are taught:
    ``lesion``, the method's rule (diseased where the lesion masks touch the patch), or ``image``,
    the image's grade on all 64 patches (weak labels: a diagnostic of what image-level appearance
    alone gives; validation and test keep the lesion labels)."""
    from ml.train.loop import TrainData

    tr, va = arrays.select(train_ids), arrays.select(val_ids)
    if rule == "image":
        labels = np.repeat(tr.image_labels.astype(np.int8)[:, None], tr.patch_labels.shape[1], axis=1)
    else:
        labels = tr.patch_labels.copy()
    keep = np.isin(np.array(train_ids), np.array(labeled_ids))
    labels[~keep] = -1
    return TrainData(
        patches=tr.patches,
        patch_labels=labels,
        image_ids=list(train_ids),
        val_patches=va.patches,
        val_patch_labels=va.patch_labels,
        val_image_labels=va.image_labels,
        params=arrays.params,
    )


# ---------------------------------------------------------------- one cell


def run_cell(
    cell: Cell, arrays: Any, ids: tuple[list[str], list[str], list[str]], opts: dict[str, Any]
) -> dict:
    """Train one (method, labeled, sampling) run and evaluate it on the test cohort."""
    import torch

    from ml.data.cohort import sample_labeled
    from ml.eval.metrics import auc as roc_auc
    from ml.eval.metrics import localization_auc, patch_auc, sensitivity_specificity, sigmoid
    from ml.heatmap import heatmap
    from ml.train import ssl_gan, supervised
    from ml.train.config import preset
    from ml.train.loop import evaluate, model_patches, resolve_device

    if opts.get("threads"):
        torch.set_num_threads(opts["threads"])
    train_ids, val_ids, test_ids = ids
    row = {i: k for k, i in enumerate(arrays.ids)}
    labels = [int(arrays.image_labels[row[i]]) for i in train_ids]
    n = cell.labeled if cell.labeled < len(train_ids) else "all"
    subset = sample_labeled(train_ids, n, opts["samplings"], seed=opts["split_seed"], labels=labels)[
        cell.sampling
    ]
    data = train_data(arrays, train_ids, subset.labeled, val_ids, opts["train_labels"])
    seed = 1000 * cell.sampling + cell.labeled + TRAIN_SEED_STRIDE * opts["train_seed"]
    model_cfg, cfg = preset(opts["preset"], **opts["overrides"], seed=seed)
    model_cfg = replace(
        model_cfg,
        input_norm=opts["input_norm"],
        pool=opts["pool"],
        input_dropout=opts["dropout"][0],
        dropout=opts["dropout"][1],
        g_base=opts["g_base"],
        model_res=arrays.params.model_res,
    )
    cfg = replace(
        cfg,
        precision=opts["precision"],
        unlabeled_weight=opts["unlabeled_weight"],
        fm_features=opts["fm_features"],
        wn_scales=opts["wn_scales"],
        adam_eps=opts["adam_eps"],
        g_lr_scale=opts["g_lr_scale"],
        labeled_sampling=opts["labeled_sampling"],
    )
    if cell.method == "resnet34" and opts.get("resnet_epochs"):
        cfg = replace(cfg, epochs=opts["resnet_epochs"])
    dev = resolve_device(opts["device"])
    if dev.type == "cuda":
        torch.backends.cudnn.benchmark = True  # fixed batch shapes: let cuDNN pick its fastest kernels
    t0 = time.perf_counter()

    def show(p: Any) -> None:  # validation points only: the learning curve, live
        if p.val_patch_auc is not None and p.iteration % max(1, p.iterations // p.epochs) == 0:
            print(
                f"  {cell.name} epoch {p.epoch}/{p.epochs} val patch {p.val_patch_auc:.3f} "
                f"image {p.val_image_auc} {p.it_per_s:.1f} it/s",
                flush=True,
            )

    if cell.method == "ssl-gan":
        result = ssl_gan.train(data, cfg, device=dev, model_cfg=model_cfg, on_progress=show)
    else:
        result = supervised.train(
            data, cfg, device=dev, model_cfg=model_cfg, method=cell.method, on_progress=show
        )
    wall = time.perf_counter() - t0
    test = arrays.select(test_ids)
    inputs = model_patches(test.patches, model_cfg)
    ev = evaluate(result.classifier().to(dev), inputs, test.patch_labels, test.image_labels, dev)
    probs = sigmoid(ev["logits"])
    g = arrays.params.grid
    heat = np.stack([heatmap(p.reshape(g, g), size=test.masks.shape[-1]) for p in probs])
    sens, spec = sensitivity_specificity(ev["scores"], test.image_labels, result.threshold)
    run_dir = Path(opts["out"]) / "runs"
    run_dir.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(
        run_dir / f"{cell.name}.npz",
        scores=ev["scores"],
        image_labels=test.image_labels,
        logits=ev["logits"],
        patch_labels=test.patch_labels,
    )
    (run_dir / f"{cell.name}.history.json").write_text(json.dumps(result.history))
    return {
        "method": cell.method,
        "labeled": cell.labeled,
        "sampling": cell.sampling,
        "patch_auc": _r(patch_auc(ev["logits"], test.patch_labels)),
        "image_auc": _r(roc_auc(test.image_labels, ev["scores"])),
        "loc_auc": _r(localization_auc(heat, test.masks)),
        "epochs": result.epochs_run,
        "best_epoch": result.best_epoch,
        "iterations": result.history[-1]["iteration"] if result.history else 0,
        "val_image_auc": result.val_metrics.get("image_auc"),
        "val_patch_auc": result.val_metrics.get("patch_auc"),
        "threshold": result.threshold,
        "test_sensitivity": _r(sens),
        "test_specificity": _r(spec),
        "preset": opts["preset"],
        "input_norm": model_cfg.input_norm,
        "pool": model_cfg.pool,
        "dropout": [model_cfg.input_dropout, model_cfg.dropout],
        "train_labels": opts["train_labels"],
        "precision": cfg.precision,
        "unlabeled_weight": cfg.unlabeled_weight if cell.method == "ssl-gan" else None,
        "g_base": model_cfg.g_base if cell.method == "ssl-gan" else None,
        "fm_features": cfg.fm_features if cell.method == "ssl-gan" else None,
        "wn_scales": cfg.wn_scales if cell.method == "ssl-gan" else None,
        "adam_eps": cfg.adam_eps if cell.method == "ssl-gan" else None,
        "g_lr_scale": cfg.g_lr_scale if cell.method == "ssl-gan" else None,
        # ResNet34 keeps Table 5's class-weighted loss over its own epochs of the labeled set.
        "labeled_sampling": cfg.labeled_sampling if cell.method != "resnet34" else None,
        "train_seed": opts["train_seed"],
        "streams": opts["streams"],
        "step": cfg.step if cell.method == "ssl-gan" else "eager",  # the baselines always run eagerly
        "model_res": model_cfg.model_res,
        "device": str(dev) if dev.type == "cpu" else torch.cuda.get_device_name(dev),
        "wall_s": round(wall, 1),
        "data": opts["data_desc"],
    }


def _r(x: float) -> float | None:
    return None if x is None or (isinstance(x, float) and math.isnan(x)) else round(float(x), 4)


# ---------------------------------------------------------------- protocol


def load_results(out: Path) -> list[dict]:
    path = out / "results.json"
    return json.loads(path.read_text()) if path.exists() else []


def save_results(out: Path, results: list[dict]) -> None:
    tmp = out / "results.json.tmp"
    tmp.write_text(
        json.dumps(sorted(results, key=lambda r: (r["method"], r["labeled"], r["sampling"])), indent=1)
    )
    os.replace(tmp, out / "results.json")


def cells(methods: Iterable[str], labeled: Iterable[int], samplings: int) -> list[Cell]:
    """Sampling-major order, so a stopped run has whole samplings of every cell rather than a few cells."""
    return [Cell(m, n, s) for s in range(samplings) for n in labeled for m in methods]


@dataclass
class Plan:
    """What a protocol run over ``args`` has to do: the data, the split, the options every cell
    gets, and the cells not yet in ``out/results.json`` (so a resumed run skips finished ones)."""

    out: Path
    arrays: Any
    desc: str
    ids: tuple[list[str], list[str], list[str]]
    overrides: dict[str, Any]
    opts: dict[str, Any]
    results: list[dict]
    done: set[tuple[str, int, int]]
    todo: list[Cell]


def plan(args: argparse.Namespace) -> Plan:
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    arrays, desc = load_data(args.data, out, tuple(args.synthetic_counts), Path(args.cache))
    ids = split(arrays, args.split_seed)
    n_train = len(ids[0])
    labeled = [n_train if x in ("all", str(n_train)) else int(x) for x in args.labeled.split(",")]
    overrides = {
        key: getattr(args, key)
        for key in ("epochs", "max_iters_per_epoch", "batch_size", "eval_every", "step")
        if getattr(args, key) is not None
    }
    opts = {
        "samplings": args.samplings,
        "split_seed": args.split_seed,
        "preset": args.preset,
        "overrides": overrides,
        "device": args.device,
        "threads": args.threads,
        "out": str(out),
        "data_desc": desc,
        "resnet_epochs": args.resnet_epochs,
        **folder_options(args),
    }
    _check_same_folder_options(out, opts)
    results = load_results(out)
    done = {(r["method"], r["labeled"], r["sampling"]) for r in results}
    todo = [
        c
        for c in cells(args.methods.split(","), labeled, args.samplings)
        if (c.method, c.labeled, c.sampling) not in done
    ]
    return Plan(out, arrays, desc, ids, overrides, opts, results, done, todo)


def folder_options(args: argparse.Namespace) -> dict[str, Any]:
    """What every cell of a folder shares (the network's input, pooling and dropout, the
    training-label rule and the training precision): the flags, else the preset's defaults."""
    from ml.train.config import preset

    m = preset(args.preset)[0]
    dropout = _dropout_pair(args.dropout) if args.dropout else [m.input_dropout, m.dropout]
    return {
        "input_norm": args.input_norm or m.input_norm,
        "pool": args.pool or m.pool,
        "dropout": dropout,
        "train_labels": args.train_labels,
        "precision": args.precision,
        "unlabeled_weight": args.unlabeled_weight,
        "g_base": args.g_base or m.g_base,
        "fm_features": args.fm_features,
        "wn_scales": args.wn_scales,
        "adam_eps": args.adam_eps,
        "g_lr_scale": args.g_lr_scale,
        "labeled_sampling": args.labeled_sampling,
        "train_seed": args.train_seed,
        "streams": STREAMS_VERSION,
    }


def _dropout_pair(text: str) -> list[float]:
    try:
        pair = [float(x) for x in text.split(",")]
    except ValueError:
        pair = []
    if len(pair) != 2 or not all(0.0 <= p < 1.0 for p in pair):
        raise SystemExit(f"--dropout takes INPUT,HIDDEN rates in [0, 1), e.g. 0.2,0.5; not {text!r}")
    return pair


# (key, flag, what folders written before the option existed ran with)
_FOLDER_FLAGS = (
    ("input_norm", "--input-norm", "none"),
    ("pool", "--pool", "mean"),
    ("dropout", "--dropout", [0.2, 0.5]),
    ("train_labels", "--train-labels", "lesion"),
    ("precision", "--precision", "fp32"),
    ("unlabeled_weight", "--unlabeled-weight", 1.0),
    ("g_base", "--g-base", None),  # None: the folder's preset's generator width
    ("fm_features", "--fm-features", "pooled"),
    ("wn_scales", "--wn-scales", "trainable"),
    ("adam_eps", "--adam-eps", 1e-8),
    ("g_lr_scale", "--g-lr-scale", 1.0),
    ("labeled_sampling", "--labeled-sampling", "tiled"),
    ("train_seed", "--train-seed", 0),
)


# What a results row records as None for a method that ignores the setting (see run_cell).
_SSL_GAN_ONLY = ("unlabeled_weight", "g_base", "fm_features", "wn_scales", "adam_eps", "g_lr_scale")


def row_setting(row: dict, key: str) -> Any:
    """A results.json row's learner setting. Rows written before an option existed lack its key,
    yet ran with the value the option then had: a later folder of the same learner must read as
    the same learner, and one that set the option otherwise must not."""
    if key in row:
        return row[key]
    if key == "streams":  # rows from before the trainers' streams were versioned
        return 1
    if (key in _SSL_GAN_ONLY and row["method"] != "ssl-gan") or (
        key == "labeled_sampling" and row["method"] == "resnet34"
    ):
        return None
    old = next((old for k, _, old in _FOLDER_FLAGS if k == key), None)
    if old is None and key == "g_base":  # the row's preset decided it
        from ml.train.config import preset

        old = preset(row.get("preset", "full"))[0].g_base
    return old


def _check_same_folder_options(out: Path, opts: dict[str, Any]) -> None:
    """A folder's cells share its ``folder_options``: refuse to resume it with others."""
    from ml.train.config import preset

    meta = out / "meta.json"
    if not meta.exists():
        return
    before = json.loads(meta.read_text())
    for key, flag, old_default in _FOLDER_FLAGS:
        if old_default is None:  # the folder's preset decided it
            old_default = getattr(preset(before.get("preset", "full"))[0], key)
        was = before.get(key, old_default)
        if was != opts[key]:
            shown = ",".join(map(str, was)) if isinstance(was, list) else was
            raise SystemExit(
                f"{out} holds runs with {flag} {shown}; resume it with {flag} {shown} "
                f"or write these runs to another --out folder"
            )
    if before.get("streams", 1) != opts["streams"]:
        raise SystemExit(
            f"{out} holds runs drawn from the trainers' random streams version {before.get('streams', 1)}; "
            f"this code draws version {opts['streams']}, so its seeds are other draws: write these runs "
            "to another --out folder"
        )


def write_meta(p: Plan, args: argparse.Namespace, command: str, host: str) -> dict:
    """The folder's meta.json: how its runs were made; a resumed folder keeps its earlier commands."""
    out, ids = p.out, p.ids
    meta = {
        "command": command,
        "data": p.desc,
        "split": {"train": len(ids[0]), "val": len(ids[1]), "test": len(ids[2]), "seed": args.split_seed},
        "host": host,
        "cpu_count": os.cpu_count(),
        "preset": args.preset,
        "overrides": p.overrides,
        "resnet_epochs": args.resnet_epochs,
        "input_norm": p.opts["input_norm"],
        "pool": p.opts["pool"],
        "dropout": p.opts["dropout"],
        "train_labels": p.opts["train_labels"],
        "precision": p.opts["precision"],
        "unlabeled_weight": p.opts["unlabeled_weight"],
        "g_base": p.opts["g_base"],
        "fm_features": p.opts["fm_features"],
        "wn_scales": p.opts["wn_scales"],
        "adam_eps": p.opts["adam_eps"],
        "g_lr_scale": p.opts["g_lr_scale"],
        "labeled_sampling": p.opts["labeled_sampling"],
        "train_seed": p.opts["train_seed"],
        "streams": p.opts["streams"],
    }
    previous = json.loads((out / "meta.json").read_text()) if (out / "meta.json").exists() else {}
    meta["commands"] = [*previous.get("commands", []), command]
    (out / "meta.json").write_text(json.dumps(meta, indent=1))
    return meta


def run(args: argparse.Namespace) -> list[dict]:
    p = plan(args)
    out, arrays, desc, ids, opts = p.out, p.arrays, p.desc, p.ids, p.opts
    results, done, todo = p.results, p.done, p.todo
    meta = write_meta(p, args, "python -m ml.bench.paper " + " ".join(args.argv), platform.node())
    print(f"{len(done)} cells done, {len(todo)} to run; data {desc}, split {meta['split']}", flush=True)
    t0 = time.perf_counter()
    if args.jobs <= 1:
        for c in todo:
            results.append(run_cell(c, arrays, ids, opts))
            save_results(out, results)
            _print(results[-1], t0)
    else:
        # spawn, not fork: a forked child cannot use CUDA; the cohort is sent once per worker.
        ctx = multiprocessing.get_context("spawn")
        with ProcessPoolExecutor(
            args.jobs, mp_context=ctx, initializer=_init_worker, initargs=(arrays, ids, opts)
        ) as pool:
            pending = {pool.submit(_run_in_worker, c) for c in todo}
            while pending:
                finished, pending = wait(pending, return_when=FIRST_COMPLETED)
                for f in finished:
                    results.append(f.result())
                    save_results(out, results)
                    _print(results[-1], t0)
    write_report(out, results, meta)
    return results


_WORKER: dict[str, Any] = {}


def _init_worker(arrays: Any, ids: Any, opts: dict[str, Any]) -> None:
    _WORKER.update(arrays=arrays, ids=ids, opts=opts)


def _run_in_worker(cell: Cell) -> dict:
    return run_cell(cell, _WORKER["arrays"], _WORKER["ids"], _WORKER["opts"])


def _print(r: dict, t0: float) -> None:
    print(
        f"[{time.perf_counter() - t0:7.0f}s] {r['method']:9s} n={r['labeled']:3d} s={r['sampling']} "
        f"patch {r['patch_auc']} image {r['image_auc']} loc {r['loc_auc']} ({r['wall_s']} s)",
        flush=True,
    )


# ---------------------------------------------------------------- report


def _stats(vals: list[float]) -> tuple[float, float, int]:
    v = [x for x in vals if x is not None]
    if not v:
        return math.nan, math.nan, 0
    return float(np.mean(v)), float(np.std(v)), len(v)


def table(results: list[dict], metric: str, published: bool) -> str:
    methods = [m for m in ("ssl-gan", "convnet", "resnet34") if any(r["method"] == m for r in results)]
    ns = sorted({r["labeled"] for r in results})
    head = "| method | " + " | ".join(f"{n} labeled" for n in ns) + " |"
    lines = [head, "|---|" + "---|" * len(ns)]
    for m in methods:
        row = []
        for n in ns:
            mean, std, k = _stats([r[metric] for r in results if r["method"] == m and r["labeled"] == n])
            cell = "-" if k == 0 else f"{100 * mean:.1f} ± {100 * std:.1f} (n={k})"
            if published:
                pub = PUBLISHED_IMAGE_AUC.get(m, {}).get(n)
                cell += f" [paper {pub}]" if pub is not None else ""
            row.append(cell)
        lines.append(f"| {m} | " + " | ".join(row) + " |")
    return "\n".join(lines)


def write_report(out: Path, results: list[dict], meta: dict) -> None:
    from ml.train.config import preset

    if not results:
        return
    wall = sum(r["wall_s"] for r in results)
    md = [
        f"# Paper protocol: {out.name}",
        "",
        "Commands (in order; each resumes the same folder):",
        "",
        *[f"    {c}" for c in meta.get("commands", [meta["command"]])],
        "",
        f"Data: {meta['data']}, split {meta['split']}; device {results[0]['device']}; "
        f"preset {meta['preset']} with {meta['overrides']}, input norm {meta.get('input_norm', 'none')}, "
        f"pooling {meta.get('pool', 'mean')}, dropout (input, hidden) {meta.get('dropout', [0.2, 0.5])}, "
        f"training patch labels {meta.get('train_labels', 'lesion')}, "
        f"training precision {meta.get('precision', 'fp32')}, "
        f"SSL-GAN unlabeled weight {meta.get('unlabeled_weight', 1.0)}, "
        f"generator root width {meta.get('g_base', preset(meta['preset'])[0].g_base)}, "
        f"feature matching on {meta.get('fm_features', 'pooled')} features, "
        f"weight-norm scales {meta.get('wn_scales', 'trainable')}, "
        f"Adam epsilon {meta.get('adam_eps', 1e-8):g}, "
        f"generator learning rate x{meta.get('g_lr_scale', 1.0):g}, "
        f"labeled patches drawn {meta.get('labeled_sampling', 'tiled')}, "
        f"training seed offset {meta.get('train_seed', 0)}; {len(results)} runs, "
        f"{wall / 60:.1f} min of training.",
        "",
        "Image-level AUC (%), mean ± std over samplings, beside the method's published image AUC:",
        "",
        table(results, "image_auc", published=True),
        "",
        "Patch-level AUC (%):",
        "",
        table(results, "patch_auc", published=False),
        "",
        "Pixel-level localization AUC (%) of the heatmaps against the lesion masks:",
        "",
        table(results, "loc_auc", published=False),
        "",
    ]
    (out / "table.md").write_text("\n".join(md))
    with contextlib.suppress(ImportError):  # matplotlib missing: the tables are still written
        plot_rocs(out, results)
        plot_curves(out, results)


def plot_rocs(out: Path, results: list[dict]) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from ml.eval.metrics import roc

    ns = sorted({r["labeled"] for r in results})
    fig, axes = plt.subplots(1, len(ns), figsize=(4 * len(ns), 4), squeeze=False)
    colours = {"ssl-gan": "tab:red", "convnet": "tab:blue", "resnet34": "tab:green"}
    for ax, n in zip(axes[0], ns, strict=True):
        for r in results:
            if r["labeled"] != n:
                continue
            path = out / "runs" / f"{r['method']}_{r['labeled']}_{r['sampling']}.npz"
            if not path.exists():
                continue
            z = np.load(path)
            fpr, tpr = roc(z["image_labels"], z["scores"])
            ax.plot(
                fpr,
                tpr,
                color=colours.get(r["method"], "k"),
                alpha=0.6,
                label=r["method"] if r["sampling"] == 0 else None,
            )
        ax.plot([0, 1], [0, 1], "k:", lw=0.8)
        ax.set_title(f"{n} labeled images (image level)")
        ax.set_xlabel("false positive rate")
        ax.set_ylabel("true positive rate")
        ax.legend(loc="lower right")
    fig.tight_layout()
    fig.savefig(out / "roc_image.png", dpi=80)
    plt.close(fig)


def history_path(out: Path, r: dict) -> Path:
    """Where ``run_cell`` saved the per-epoch history of the run a results.json row describes."""
    return out / "runs" / f"{Cell(r['method'], r['labeled'], r['sampling']).name}.history.json"


def learning_curve(out: Path, r: dict) -> list[tuple[int, float, float]]:
    """(epoch, validation patch AUC, validation image AUC) of one run, from its saved history."""
    path = history_path(out, r)
    if not path.exists():
        return []
    hist = json.loads(path.read_text())
    return [
        (h["epoch"], h["val_patch_auc"], h["val_image_auc"])
        for h in hist
        if h.get("val_patch_auc") is not None
    ]


def plot_curves(out: Path, results: list[dict]) -> None:
    """Validation AUC against epochs for every run: the learning curves the epoch budget is chosen from."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(10, 4))
    colours = {"ssl-gan": "tab:red", "convnet": "tab:blue", "resnet34": "tab:green"}
    for r in results:
        curve = learning_curve(out, r)
        if not curve:
            continue
        e, p, i = zip(*curve, strict=True)
        style = dict(color=colours.get(r["method"], "k"), alpha=0.3 + 0.7 * (r["labeled"] <= 20), lw=1)
        axes[0].plot(e, p, **style, label=f"{r['method']} n={r['labeled']}" if r["sampling"] == 0 else None)
        axes[1].plot(e, [x if x is not None else np.nan for x in i], **style)
    axes[0].set_title("validation patch AUC")
    axes[1].set_title("validation image AUC")
    for ax in axes:
        ax.set_xlabel("epoch")
    if axes[0].get_legend_handles_labels()[0]:  # a ResNet34-only folder records no validation AUC
        axes[0].legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(out / "learning_curves.png", dpi=80)
    plt.close(fig)


def parse(argv: list[str] | None = None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description="The method's evaluation protocol (Tables 1 and 2).")
    ap.add_argument("--data", default="synthetic", help="synthetic | shared | cohort folder | cohort .npz")
    ap.add_argument("--labeled", default="10,20,40,80,all")
    ap.add_argument("--samplings", type=int, default=5)
    ap.add_argument("--methods", default="ssl-gan,convnet,resnet34")
    ap.add_argument("--preset", default="full", choices=["full", "small", "tiny"])
    ap.add_argument("--epochs", type=int, default=None, help="override the preset's epochs")
    ap.add_argument(
        "--input-norm",
        dest="input_norm",
        choices=INPUT_NORMS,
        default=None,
        help="model input: each image's colours standardised (image, the presets' default) or "
        "the max-normalised patches as published (none); see ml/data/colour.py",
    )
    ap.add_argument(
        "--pool",
        choices=POOLS,
        default=None,
        help="the discriminator's global pooling (mean as published, the presets' default, or max)",
    )
    ap.add_argument(
        "--dropout",
        default=None,
        metavar="INPUT,HIDDEN",
        help="the discriminator's dropout rates (default: the preset's; 0.2,0.5 as published, 0,0 in small)",
    )
    ap.add_argument(
        "--train-labels",
        dest="train_labels",
        choices=["lesion", "image"],
        default="lesion",
        help="what labeled images' patches are taught: lesion (the method's rule, from the masks) or "
        "image (the image's grade on every patch; a diagnostic, evaluation is unchanged)",
    )
    ap.add_argument(
        "--precision",
        choices=PRECISIONS,
        default="fp32",
        help="training forward passes in fp32 (the method's) or under bf16 autocast (AUC kept in a "
        "paired 24-epoch protocol run, not shown for long runs: docs/benchmarks.md (i), (k))",
    )
    ap.add_argument(
        "--step",
        choices=STEPS,
        default=None,
        help="the SSL-GAN's iteration: eager (default) or graph (CUDA: compiled and replayed as one "
        "CUDA graph; same arithmetic, for speed)",
    )
    ap.add_argument(
        "--unlabeled-weight",
        dest="unlabeled_weight",
        type=float,
        default=1.0,
        help="weight of the SSL-GAN discriminator's real-vs-fake term beside the supervised loss "
        "(1 as published; 0 trains the same discriminator on the labeled patches alone, an ablation)",
    )
    ap.add_argument(
        "--fm-features",
        dest="fm_features",
        choices=FM_FEATURES,
        default="pooled",
        help="which of D's activations the SSL-GAN generator's feature matching compares: the pooled "
        "features (as Salimans et al.'s CIFAR-10 code), or the last NiN layer's map per position",
    )
    ap.add_argument(
        "--wn-scales",
        dest="wn_scales",
        choices=WN_SCALES,
        default="trainable",
        help="the SSL-GAN's weight-norm scales: trainable everywhere, or as Salimans et al.'s code "
        "(D's hidden scales fixed after the data-dependent init, both output layers starting at 0.1)",
    )
    ap.add_argument(
        "--adam-eps",
        dest="adam_eps",
        type=float,
        default=1e-8,
        help="Adam's epsilon for the SSL-GAN's two networks (1e-8, PyTorch's; 1e-4 reproduces the "
        "floor of Salimans et al.'s code, which adds 1e-8 under the square root)",
    )
    ap.add_argument(
        "--g-lr-scale",
        dest="g_lr_scale",
        type=float,
        default=1.0,
        help="the SSL-GAN generator's learning rate as a multiple of the discriminator's (1 as "
        "published; e.g. 0.33 slows the generator, a stabiliser from outside the method)",
    )
    ap.add_argument(
        "--labeled-sampling",
        dest="labeled_sampling",
        choices=LABELED_SAMPLINGS,
        default="tiled",
        help="how the SSL-GAN and the ConvNet draw labeled patches each epoch: tiled (the labeled "
        "set repeated, as published) or balanced (an equal share per class)",
    )
    ap.add_argument(
        "--train-seed",
        dest="train_seed",
        type=int,
        default=0,
        help="another draw of every run's random streams (initialisation, batch order, augmentation, "
        f"noise): the training seed moves by {TRAIN_SEED_STRIDE} x TRAIN_SEED, the labeled samplings "
        "stay; 0 (the default) is the seed every earlier folder used",
    )
    ap.add_argument(
        "--g-base",
        dest="g_base",
        type=int,
        default=None,
        help="the SSL-GAN generator's root width, 4x4xG_BASE (default: the preset's; 512 full, 64 small)",
    )
    ap.add_argument("--max-iters-per-epoch", dest="max_iters_per_epoch", type=int, default=None)
    ap.add_argument("--batch-size", dest="batch_size", type=int, default=None)
    ap.add_argument("--eval-every", dest="eval_every", type=int, default=None)
    ap.add_argument(
        "--resnet-epochs",
        dest="resnet_epochs",
        type=int,
        default=None,
        help="epoch cap of the ResNet34 baseline (early stopping usually ends it first)",
    )
    ap.add_argument("--device", default="auto")
    ap.add_argument("--jobs", type=int, default=1, help="cells trained in parallel processes")
    ap.add_argument("--threads", type=int, default=None, help="torch threads per job (1 on a busy CPU)")
    ap.add_argument("--split-seed", dest="split_seed", type=int, default=0)
    ap.add_argument(
        "--synthetic-counts",
        dest="synthetic_counts",
        type=int,
        nargs=2,
        default=(168, 81),
        metavar=("HEALTHY", "DR"),
    )
    ap.add_argument("--cache", default=".cache/patches")
    ap.add_argument("--out", required=True)
    args = ap.parse_args(argv)
    if not args.g_lr_scale > 0:  # refused here, not in a worker after the data has loaded
        ap.error(f"--g-lr-scale must be positive, not {args.g_lr_scale:g}")
    args.argv = list(argv) if argv is not None else __import__("sys").argv[1:]
    return args


def main(argv: list[str] | None = None) -> None:
    run(parse(argv))


if __name__ == "__main__":
    main()
