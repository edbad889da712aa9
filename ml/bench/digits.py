"""Does this SSL-GAN gain from unlabeled data where the method is known to? A sanity benchmark.

On IDRiD the SSL-GAN does not beat its own supervised path (docs/benchmarks.md, (k)-(m)). That
leaves two explanations: a defect in the GAN part of our implementation, or data on which
feature matching does not help. Salimans et al. (2016) showed the method's gain on MNIST with
100 labels; nothing can be downloaded here, so this uses scikit-learn's bundled handwritten
digits (1,797 8x8 images, 10 classes) upsampled to 32x32. The networks, losses, iteration
(``SSLGANStep``), initialisation and EMA are ml.train.ssl_gan's own, with K = 10, trained on
``n`` labeled images per class plus every training image unlabeled. Arms (``--arms``): ``gan``
is the method at the preset; ``sup`` the same trainer with the real-vs-fake term off (unlabeled
weight 0 leaves only the supervised cross entropy on D); ``spatial`` matches the last NiN
layer's map per position instead of the pooled features; ``g256`` widens the generator's root
4x; ``drop`` restores the published dropout, which the small preset drops; ``pub`` keeps the
discriminator's hidden weight-norm scales fixed and starts both output layers at std 0.1, as
the published code does (``TrainConfig.wn_scales``); ``eps`` gives Adam the published code's
epsilon floor (``TrainConfig.adam_eps`` 1e-4). Test accuracy of the EMA discriminator
after the last iteration (no selection: the test set is never used for choices), with a test
curve of ten points and, for each, the mean real-vs-fake and feature-matching losses since the
previous point (``game_curve``), to read the curve's dips against the game. Augmentation
is off: flips change digits' classes.

``--positive D`` turns the ten classes into IDRiD's shape of problem: K = 2, digit D (a tenth
of the labeled and of the unlabeled images, as lesion patches are a minority of the patches)
against the other nine, scored by the test AUC of the diseased-style logit l1 - l0. The labeled
draw is the ten-class task's, so the two tasks are paired seed by seed.

    python -m ml.bench.digits --per-class 10 --seeds 3 --iters 1200 \\
        --arms gan,sup,gan-spatial,gan-g256 --jobs 2
"""

from __future__ import annotations

import argparse
import json
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import torch

from ml.eval.metrics import auc
from ml.train.config import preset
from ml.train.ema import EMA
from ml.train.loop import Streams, epoch_indices, lr_factor, to_model_input
from ml.train.ssl_gan import SSLGANStep, init_networks, output_std

N_CLASSES = 10
TEST_SIZE = 500


def load_digits_uint8(res: int = 32) -> tuple[np.ndarray, np.ndarray]:
    """(N, 3, res, res) uint8 images (grey in three channels, bilinear upsampling) and labels."""
    from sklearn.datasets import load_digits

    bunch = load_digits()
    x = torch.from_numpy(bunch.images.astype(np.float32) / 16.0)[:, None]
    x = torch.nn.functional.interpolate(x, size=(res, res), mode="bilinear", align_corners=False)
    x = (x.clamp(0, 1) * 255).round().to(torch.uint8).expand(-1, 3, -1, -1).contiguous()
    return x.numpy(), bunch.target.astype(np.int64)


def split(y: np.ndarray, test_size: int = TEST_SIZE, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Stratified train / test indices, fixed by ``seed``."""
    from sklearn.model_selection import train_test_split

    idx = np.arange(len(y))
    train, test = train_test_split(idx, test_size=test_size, stratify=y, random_state=seed)
    return np.sort(train), np.sort(test)


def labeled_subset(y: np.ndarray, per_class: int, seed: int) -> np.ndarray:
    """``per_class`` positions of each class in ``y``, drawn by ``seed`` alone (the same for every arm)."""
    rng = np.random.default_rng(seed)
    picks = [rng.choice(np.flatnonzero(y == c), per_class, replace=False) for c in range(N_CLASSES)]
    return np.sort(np.concatenate(picks))


# Arms: what each changes from the preset. "sup" is the trainer without the GAN term; "spatial"
# matches features per position; "drop" is the published dropout; "g256" a 4x wider generator;
# "pub" the weight-norm scales as Salimans et al.'s code has them (TrainConfig.wn_scales); "eps"
# Adam's epsilon floor as that code has it (TrainConfig.adam_eps); "glr" a generator three times
# slower than the discriminator (TrainConfig.g_lr_scale), a stabiliser from outside the method.
ARMS: dict[str, dict] = {
    "gan": {},
    "sup": {"unlabeled_weight": 0.0},
    "gan-spatial": {"fm_features": "spatial"},
    "gan-g256": {"g_base": 256},
    "gan-drop": {"dropout": (0.2, 0.5)},
    "sup-drop": {"unlabeled_weight": 0.0, "dropout": (0.2, 0.5)},
    "gan-pub": {"wn_scales": "published"},
    "gan-pub-drop": {"wn_scales": "published", "dropout": (0.2, 0.5)},
    "gan-eps": {"adam_eps": 1e-4},
    "sup-eps": {"unlabeled_weight": 0.0, "adam_eps": 1e-4},
    "gan-pub-eps": {"wn_scales": "published", "adam_eps": 1e-4},
    "gan-pub-eps-drop": {"wn_scales": "published", "adam_eps": 1e-4, "dropout": (0.2, 0.5)},
    "sup-eps-drop": {"unlabeled_weight": 0.0, "adam_eps": 1e-4, "dropout": (0.2, 0.5)},
    "gan-pub-eps-glr": {"wn_scales": "published", "adam_eps": 1e-4, "g_lr_scale": 0.33},
    # The recipe's supervised control in full: the GAN term off, everything else published.
    "sup-pub-eps-drop": {
        "unlabeled_weight": 0.0,
        "wn_scales": "published",
        "adam_eps": 1e-4,
        "dropout": (0.2, 0.5),
    },
}


@dataclass(frozen=True)
class Cell:
    per_class: int
    seed: int
    arm: str
    iters: int
    preset: str = "small"
    positive: int | None = None  # one digit against the other nine (K = 2) instead of ten classes


@torch.no_grad()
def score(model: torch.nn.Module, x: np.ndarray, y: np.ndarray) -> dict[str, float]:
    """Accuracy; with two classes also the AUC of logit 1 - logit 0, the patch logit of ml/."""
    logits, _ = model(to_model_input(torch.from_numpy(x)))
    out = {"acc": float((logits.argmax(1).numpy() == y).mean())}
    if logits.shape[1] == 2:
        out["auc"] = auc(y, (logits[:, 1] - logits[:, 0]).numpy())
    return out


def task_labels(y: np.ndarray, positive: int | None) -> np.ndarray:
    """The ten digit classes, or 1 for ``positive`` and 0 for every other digit."""
    return y if positive is None else (y == positive).astype(np.int64)


def run_cell(cell: Cell, threads: int = 1) -> dict:
    """Train one arm on one labeled draw; the draw depends on (per_class, seed) only."""
    torch.set_num_threads(threads)
    x, y = load_digits_uint8()
    tr, te = split(y)
    lab = tr[labeled_subset(y[tr], cell.per_class, cell.seed)]  # the same draw for either task
    y = task_labels(y, cell.positive)
    model_cfg, train_cfg = preset(cell.preset)
    arm = ARMS[cell.arm]
    n_classes = N_CLASSES if cell.positive is None else 2
    model_cfg = replace(model_cfg, n_classes=n_classes, g_base=arm.get("g_base", model_cfg.g_base))
    if "dropout" in arm:
        model_cfg = replace(model_cfg, input_dropout=arm["dropout"][0], dropout=arm["dropout"][1])
    cfg = replace(
        train_cfg,
        augment=False,
        seed=cell.seed,
        unlabeled_weight=arm.get("unlabeled_weight", 1.0),
        fm_features=arm.get("fm_features", "pooled"),
        wn_scales=arm.get("wn_scales", "trainable"),
        adam_eps=arm.get("adam_eps", train_cfg.adam_eps),
        g_lr_scale=arm.get("g_lr_scale", 1.0),
    )
    dev = torch.device("cpu")
    torch.manual_seed(cfg.seed)
    streams = Streams.from_seed(cfg.seed, dev)

    from ml.models.discriminator import Discriminator
    from ml.models.generator import Generator

    d, g = Discriminator(model_cfg), Generator(model_cfg)
    x_lab, y_lab = torch.from_numpy(x[lab]), torch.from_numpy(y[lab])
    x_unl = torch.from_numpy(x[tr])
    init_networks(d, g, x_unl, streams.init, dev, out_std=output_std(cfg))
    ema = EMA(d, cfg.ema_decay)
    step = SSLGANStep(d, g, cfg, dev, streams)
    bs, t0 = cfg.batch_size, time.perf_counter()
    il = epoch_indices(len(x_lab), cell.iters * bs, streams.labeled)
    iu = epoch_indices(len(x_unl), cell.iters * bs, streams.unlabeled)
    iu2 = epoch_indices(len(x_unl), cell.iters * bs, streams.unlabeled)
    curve, tail, n_tail = [], {"d_unsup": 0.0, "g_fm": 0.0}, min(100, cell.iters)
    every = max(1, cell.iters // 10)
    # Mean losses between test points: the game's state beside each point of the test curve.
    game, window = [], {"d_unsup": 0.0, "g_fm": 0.0}
    for it in range(cell.iters):
        step.set_lr(lr_factor(it, cell.iters, cfg.lr_decay_start))
        sl = slice(it * bs, (it + 1) * bs)
        losses = step(x_lab[il[sl]], y_lab[il[sl]], x_unl[iu[sl]], x_unl[iu2[sl]])
        ema.update(d)
        game_losses = {k: float(losses[k]) for k in window}
        if it >= cell.iters - n_tail:  # the game's state at the end: mean losses of the last 100 steps
            for k in tail:
                tail[k] += game_losses[k] / n_tail
        for k in window:
            window[k] += game_losses[k] / every
        if (it + 1) % every == 0:
            m = score(ema.module, x[te], y[te])
            curve.append(round(m.get("auc", m["acc"]), 4))  # AUC for the binary task
            game.append({k: round(v, 4) for k, v in window.items()})
            window = dict.fromkeys(window, 0.0)
    final = score(ema.module, x[te], y[te])
    return {
        **cell.__dict__,
        "labeled": int(len(lab)),
        "unlabeled": int(len(tr)),
        **{f"test_{k}": v for k, v in final.items()},
        "test_curve": curve,
        "game_curve": game,
        "final_d_unsup": round(tail["d_unsup"], 4),
        "final_g_fm": round(tail["g_fm"], 4),
        "wall_s": round(time.perf_counter() - t0, 1),
    }


def table(rows: list[dict]) -> str:
    """Test error (%), or AUC (%) for the binary task, per labeled count and arm: the mean over
    seeds, then each seed's."""
    counts = sorted({r["per_class"] for r in rows})
    arms = list(dict.fromkeys(r["arm"] for r in rows))
    binary = all("test_auc" in r for r in rows)
    name = "AUC %" if binary else "error %"

    def figure(r: dict) -> float:
        return 100 * (r["test_auc"] if binary else 1 - r["test_acc"])

    out = [
        "| labeled per class | " + " | ".join(f"{a}: {name}" for a in arms) + " |",
        "|---|" + "---|" * len(arms),
    ]
    for n in counts:
        cells = []
        for a in arms:
            vals = [figure(r) for r in rows if r["per_class"] == n and r["arm"] == a]
            cells.append(f"{np.mean(vals):.1f} ({' '.join(f'{e:.1f}' for e in vals)})")
        out.append(f"| {n} | " + " | ".join(cells) + " |")
    return "\n".join(out)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--per-class", default="2,5,10", help="labeled images per class, comma-separated")
    ap.add_argument("--seeds", type=int, default=3, help="labeled draws (and training seeds) per count")
    ap.add_argument(
        "--first-seed",
        type=int,
        default=0,
        help="seeds run are first-seed .. first-seed + seeds - 1 (to add draws to an earlier run)",
    )
    ap.add_argument(
        "--arms",
        default="gan,sup",
        help=f"comma-separated, from {', '.join(ARMS)} (gan: the method; sup: no GAN term; "
        "spatial: feature matching per position; g256: generator root 256; drop: dropout 0.2 / 0.5; "
        "pub: weight-norm scales as published; eps: Adam's epsilon floor as published)",
    )
    ap.add_argument(
        "--positive",
        type=int,
        choices=range(N_CLASSES),
        metavar="DIGIT",
        help="binary task instead of ten classes: DIGIT (a tenth of the images) against the other "
        "nine, K = 2, reported as test AUC; the rare-positive setting of IDRiD's patches",
    )
    ap.add_argument("--iters", type=int, default=3000, help="training iterations per run")
    ap.add_argument("--preset", default="small", choices=["small", "tiny", "full"])
    ap.add_argument("--jobs", type=int, default=1, help="runs in parallel processes")
    ap.add_argument("--threads", type=int, default=1, help="torch threads per process")
    ap.add_argument("--json", type=Path, help="write every run's figures to this file")
    args = ap.parse_args(argv)
    cells = [
        Cell(int(n), s, arm, args.iters, args.preset, args.positive)
        for n in args.per_class.split(",")
        for s in range(args.first_seed, args.first_seed + args.seeds)
        for arm in args.arms.split(",")
    ]
    unknown = {c.arm for c in cells} - ARMS.keys()
    if unknown:
        ap.error(f"unknown arm(s) {', '.join(sorted(unknown))}; choose from {', '.join(ARMS)}")
    with ProcessPoolExecutor(args.jobs) as pool:
        rows = []
        for row in pool.map(run_cell, cells, [args.threads] * len(cells)):
            rows.append(row)
            print(json.dumps(row), flush=True)
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(rows, indent=1))
    print(table(rows))


if __name__ == "__main__":
    main()
