"""Method benchmarks: ``bench paper`` (the evaluation protocol) and ``bench train-speed``.

Thin wrappers around ``python -m ml.bench.paper`` and ``python -m ml.bench.train_speed``, which
run without the app (e.g. on a GPU machine that has only torch); options are passed through.
"""

from __future__ import annotations

import typer


def bench_paper(
    data: str = typer.Option("synthetic", help="synthetic | shared | cohort folder | cohort .npz"),
    labeled: str = typer.Option("10,20,40,80,all", help="labeled image counts"),
    samplings: int = typer.Option(5, help="random labeled samplings per count"),
    methods: str = typer.Option("ssl-gan,convnet,resnet34"),
    preset: str = typer.Option("full", help="full (GPU) | small (CPU) | tiny (smoke test)"),
    epochs: int | None = typer.Option(None, help="override the preset's epochs"),
    input_norm: str | None = typer.Option(
        None, help="model input: image (colours standardised per image, the default) | none (as published)"
    ),
    pool: str | None = typer.Option(None, help="discriminator's global pooling: mean (published) | max"),
    dropout: str | None = typer.Option(None, help="discriminator dropout INPUT,HIDDEN (published 0.2,0.5)"),
    train_labels: str | None = typer.Option(
        None, help="patches taught: lesion (from the masks, as published) | image (the grade; a diagnostic)"
    ),
    precision: str | None = typer.Option(
        None, help="training forward passes: fp32 (the method's) | bf16 (autocast; short runs only)"
    ),
    step: str | None = typer.Option(None, help="SSL-GAN iteration: eager | graph (CUDA graphs, for speed)"),
    unlabeled_weight: float | None = typer.Option(
        None, help="SSL-GAN real-vs-fake term's weight (1 as published; 0 = no GAN term, an ablation)"
    ),
    g_base: int | None = typer.Option(None, help="SSL-GAN generator root width (preset: 512 full, 64 small)"),
    fm_features: str | None = typer.Option(
        None, help="SSL-GAN feature matching on D's pooled features (default, as published) | spatial"
    ),
    wn_scales: str | None = typer.Option(
        None, help="SSL-GAN weight-norm scales: trainable (default) | published (Salimans et al.'s code)"
    ),
    adam_eps: float | None = typer.Option(
        None, help="SSL-GAN Adam epsilon (1e-8 default; 1e-4 = the published code's floor)"
    ),
    g_lr_scale: float | None = typer.Option(
        None, help="SSL-GAN generator learning rate as a multiple of D's (1 as published)"
    ),
    labeled_sampling: str | None = typer.Option(
        None, help="labeled patches per epoch (SSL-GAN, ConvNet): tiled (default) | balanced per class"
    ),
    max_iters_per_epoch: int | None = typer.Option(None, help="cap iterations per epoch"),
    eval_every: int | None = typer.Option(None, help="epochs between validation evaluations"),
    resnet_epochs: int | None = typer.Option(None, help="epoch cap of the ResNet34 baseline"),
    device: str = typer.Option("auto"),
    jobs: int = typer.Option(1, help="cells trained in parallel processes"),
    threads: int | None = typer.Option(None, help="torch threads per job"),
    out: str = typer.Option(..., help="output folder (results.json, table.md, ROC plots); resumable"),
) -> None:
    """The method's Tables 1 and 2: patch/image/localization AUC per method, labeled count, sampling."""
    from ml.bench import paper

    argv = [
        "--data",
        data,
        "--labeled",
        labeled,
        "--samplings",
        str(samplings),
        "--methods",
        methods,
        "--preset",
        preset,
        "--device",
        device,
        "--jobs",
        str(jobs),
        "--out",
        out,
    ]
    for flag, value in (
        ("--epochs", epochs),
        ("--input-norm", input_norm),
        ("--pool", pool),
        ("--dropout", dropout),
        ("--train-labels", train_labels),
        ("--precision", precision),
        ("--step", step),
        ("--unlabeled-weight", unlabeled_weight),
        ("--g-base", g_base),
        ("--fm-features", fm_features),
        ("--wn-scales", wn_scales),
        ("--adam-eps", adam_eps),
        ("--g-lr-scale", g_lr_scale),
        ("--labeled-sampling", labeled_sampling),
        ("--max-iters-per-epoch", max_iters_per_epoch),
        ("--eval-every", eval_every),
        ("--resnet-epochs", resnet_epochs),
        ("--threads", threads),
    ):
        if value is not None:
            argv += [flag, str(value)]
    paper.main(argv)


def bench_train_speed(
    preset: str = typer.Option("full"),
    device: str = typer.Option("auto"),
    iters: int = typer.Option(50),
    no_bf16: bool = typer.Option(False, "--no-bf16"),
    compile_mode: str = typer.Option("auto", help='"auto", "none" or a torch.compile mode'),
    budget_s: float | None = typer.Option(None, help="start no further variant after this many seconds"),
    profile: bool = typer.Option(False, "--profile", help="print the heaviest GPU kernels (stderr)"),
    json_out: bool = typer.Option(False, "--json", help="print one JSON object"),
) -> None:
    """One SSL-GAN iteration: naive eager vs optimized step, ratio and achieved TFLOP/s."""
    from ml.bench import train_speed

    argv = ["--preset", preset, "--device", device, "--iters", str(iters), "--compile-mode", compile_mode]
    argv += ["--no-bf16"] if no_bf16 else []
    argv += ["--budget-s", str(budget_s)] if budget_s is not None else []
    argv += ["--profile"] if profile else []
    argv += ["--json"] if json_out else []
    train_speed.main(argv)


def register(cli: typer.Typer, bench: typer.Typer) -> None:
    """Attach this module's commands to the root command and to the bench group."""
    bench.command("paper")(bench_paper)
    bench.command("train-speed")(bench_train_speed)
