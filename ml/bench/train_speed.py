"""Speed of one SSL-GAN training iteration: naive eager step vs the optimized step, one run.

    python -m ml.bench.train_speed --preset full --json

One iteration = a discriminator step on 100 labeled + 100 unlabeled + 100 generated patches and a
generator step (feature matching on 100 unlabeled + 100 generated), the code of
``ml.train.ssl_gan.SSLGANStep``. The naive step is that code in eager fp32 with for-each Adam;
the optimized step adds channels_last, fused Adam and, unless ``--no-bf16``, bf16 autocast, in
up to three variants, and the fastest is reported:

- ``whole_graph`` (CUDA only): the entire iteration (augmentation, all passes, losses, both Adam
  steps) captured once as one CUDA graph and replayed (``ml.train.ssl_gan.GraphedStep``), so no
  Python and no per-kernel launch is left in the loop;
- ``whole_graph_compiled`` (CUDA only): the trainer's own ``step="graph"`` (``make_step``): the
  same capture over networks compiled by ``torch.compile`` without its own CUDA graphs, so the
  capture also replays fused kernels;
- ``compiled``: the networks under ``torch.compile`` (on CUDA mode "reduce-overhead", i.e. CUDA
  graphs of each network's passes, with Python between them).

Variants run in that order (the cheap capture first) and one is not started once ``--budget-s``
seconds have passed, so a slow compile cannot cost the figures already taken. ``--profile``
prints the heaviest GPU kernels of the eager optimized step to stderr: where the time goes when
a target is missed. Data stays on the device throughout. The FLOPs of one iteration are counted
from the model with PyTorch's FlopCounterMode (forward and backward), not hard-coded, and give
the achieved TFLOP/s.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from typing import Any

import torch
from torch.utils.flop_counter import FlopCounterMode

from ml.models.discriminator import Discriminator
from ml.models.generator import Generator
from ml.train.config import preset
from ml.train.loop import Streams, init_weights, resolve_device
from ml.train.ssl_gan import GraphedStep, SSLGANStep, make_step

PUBLISHED_GFLOP_FULL = 763.0  # per iteration, full model (the figure, checked below)


def networks(preset_name: str, device: torch.device, **train_overrides: Any):
    """The preset's configs (batch 100, augmentation on), its D and G with seeded weights, and
    random streams of their own, as the trainer has."""
    model_cfg, cfg = preset(preset_name, batch_size=100, augment=True, **train_overrides)
    torch.manual_seed(0)
    d, g = Discriminator(model_cfg).to(device), Generator(model_cfg).to(device)
    init_weights(d)
    init_weights(g)
    return cfg, d, g, Streams.from_seed(1, device)


def build(
    preset_name: str,
    device: torch.device,
    optimized: bool,
    bf16: bool,
    compile_mode: str | None,
    capturable: bool = False,
):
    cfg, d, g, streams = networks(preset_name, device)
    if optimized:
        d = d.to(memory_format=torch.channels_last)
        g = g.to(memory_format=torch.channels_last)
        if compile_mode is not None:
            d = torch.compile(d, mode=compile_mode)
            g = torch.compile(g, mode=compile_mode)
    amp = torch.bfloat16 if (optimized and bf16) else None
    fused = optimized and device.type == "cuda"
    return SSLGANStep(d, g, cfg, device, streams, fused=fused, amp_dtype=amp, capturable=capturable)


def batches(device: torch.device, n: int = 100, res: int = 32) -> tuple[torch.Tensor, ...]:
    gen = torch.Generator().manual_seed(0)
    x = torch.randint(0, 256, (3, n, 3, res, res), dtype=torch.uint8, generator=gen).to(device)
    y = torch.randint(0, 2, (n,), generator=gen).to(device)
    return x[0], y, x[1], x[2]


def count_gflop(preset_name: str, device: torch.device | None = None) -> float:
    """GFLOP of one naive iteration (forward + backward, all three D passes and the G step).

    Counted from the operators' shapes, so the device only decides how long counting takes.
    """
    device = device or torch.device("cpu")
    step = build(preset_name, device, optimized=False, bf16=False, compile_mode=None)
    args = batches(device)
    with FlopCounterMode(display=False) as counter:
        step(*args)
    return counter.get_total_flops() / 1e9


def time_step(step: SSLGANStep | GraphedStep, device: torch.device, iters: int, warmup: int) -> float:
    args = batches(device)
    mark = getattr(torch.compiler, "cudagraph_mark_step_begin", None)
    for _ in range(warmup):
        if mark is not None and device.type == "cuda":
            mark()
        step(*args)
    _sync(device)
    t0 = time.perf_counter()
    for _ in range(iters):
        if mark is not None and device.type == "cuda":
            mark()
        losses = step(*args)
    float(losses["g_fm"])  # one sync at the end, not per iteration
    _sync(device)
    return (time.perf_counter() - t0) / iters * 1000.0


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


VARIANTS = ("whole_graph", "whole_graph_compiled", "compiled")


def time_variant(
    variant: str,
    preset_name: str,
    dev: torch.device,
    bf16: bool,
    compile_mode: str | None,
    iters: int,
    warmup: int,
) -> float:
    """Milliseconds per iteration of one optimized variant (raises when it cannot run here)."""
    torch._dynamo.reset()  # each variant compiles afresh, never past dynamo's recompile limit
    if variant == "compiled":
        return time_step(build(preset_name, dev, True, bf16, compile_mode), dev, iters, warmup)
    if dev.type != "cuda":
        raise RuntimeError("not available (CUDA graphs need a GPU)")
    if variant == "whole_graph_compiled":  # exactly the trainer's step="graph"
        cfg, d, g, streams = networks(preset_name, dev, step="graph", precision="bf16" if bf16 else "fp32")
        step = make_step(d, g, cfg, dev, streams)
    else:  # the same capture over the eager networks
        step = GraphedStep(build(preset_name, dev, True, bf16, None, capturable=True))
    return time_step(step, dev, iters, max(warmup, step.warmup + 1))  # capture is not timed


def profile_step(preset_name: str, dev: torch.device, bf16: bool, iters: int = 5, rows: int = 20) -> float:
    """GPU kernel time per iteration of the eager optimized step; prints the heaviest kernels.

    Kernel time well below the wall time of a step means launch-bound; close to it, compute-bound."""
    from torch.autograd import DeviceType
    from torch.profiler import ProfilerActivity, profile

    step = build(preset_name, dev, True, bf16, None)
    args = batches(dev)
    for _ in range(3):
        step(*args)
    _sync(dev)
    with profile(activities=[ProfilerActivity.CPU, ProfilerActivity.CUDA]) as prof:
        for _ in range(iters):
            step(*args)
        _sync(dev)
    events = prof.key_averages()
    print(events.table(sort_by="self_device_time_total", row_limit=rows), file=sys.stderr, flush=True)
    kernel_us = sum(e.self_device_time_total for e in events if e.device_type == DeviceType.CUDA)
    return kernel_us / iters / 1000.0


def run(
    preset_name: str = "full",
    device: str = "auto",
    iters: int = 50,
    warmup: int = 10,
    bf16: bool = True,
    compile_mode: str | None = "auto",
    budget_s: float | None = None,
    profile: bool = False,
) -> dict[str, Any]:
    t_start = time.perf_counter()
    dev = resolve_device(device)
    if compile_mode == "auto":
        compile_mode = "reduce-overhead" if dev.type == "cuda" else "default"
    if dev.type == "cuda":
        torch.backends.cudnn.benchmark = True
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
    gflop = count_gflop(preset_name, dev)
    naive_ms = time_step(build(preset_name, dev, False, False, None), dev, iters, warmup)
    # On stderr at once: a compile that runs past the caller's time limit keeps this figure.
    print(f"naive step: {naive_ms:.2f} ms, {gflop:.1f} GFLOP per iteration", file=sys.stderr, flush=True)
    use_bf16 = bf16 and (dev.type == "cuda" or torch.cpu._is_avx512_bf16_supported())
    extra: dict[str, Any] = {}
    if profile and dev.type == "cuda":
        try:
            extra["eager_kernel_ms"] = round(profile_step(preset_name, dev, use_bf16), 3)
        except Exception as exc:  # the profile is a diagnostic: never the reason figures are lost
            extra["eager_kernel_ms"] = f"failed ({type(exc).__name__}: {str(exc)[:120]})"
    variants: dict[str, float | str] = {}
    used_mode = compile_mode
    for variant in VARIANTS:
        have_figure = any(isinstance(v, float) for v in variants.values())
        if budget_s is not None and time.perf_counter() - t_start > budget_s and have_figure:
            variants[variant] = f"skipped (past the {budget_s:.0f} s budget)"
            continue
        try:
            variants[variant] = round(
                time_variant(variant, preset_name, dev, use_bf16, compile_mode, iters, warmup), 3
            )
        except Exception as exc:  # reported, never hidden: the other variants still stand
            variants[variant] = f"failed ({type(exc).__name__}: {str(exc)[:160]})"
            if "need a GPU" in str(exc):
                variants[variant] = str(exc)
        print(f"{variant} step: {variants[variant]}", file=sys.stderr, flush=True)
    timed = {k: v for k, v in variants.items() if isinstance(v, float)}
    if not timed:  # no optimized variant ran: the eager optimized step still gives a figure
        used_mode = "none (every optimized variant failed)"
        timed["eager"] = variants["eager"] = round(
            time_step(build(preset_name, dev, True, use_bf16, None), dev, iters, warmup), 3
        )
    best = min(timed, key=timed.get)
    optimized_ms = timed[best]
    name = (
        torch.cuda.get_device_name(dev) if dev.type == "cuda" else f"cpu ({torch.get_num_threads()} threads)"
    )
    return {
        "device": name,
        "naive_ms": round(naive_ms, 3),
        "optimized_ms": round(optimized_ms, 3),
        "ratio": round(naive_ms / optimized_ms, 2),
        "tflops": round(gflop / optimized_ms, 4),  # GFLOP per ms = TFLOP/s
        "naive_tflops": round(gflop / naive_ms, 4),
        "gflop_per_iter": round(gflop, 1),
        "gflop_reference_full": PUBLISHED_GFLOP_FULL if preset_name == "full" else None,
        "preset": preset_name,
        "bf16": use_bf16,
        "compile_mode": used_mode,
        "optimized_variant": best,
        "variants_ms": variants,
        "iters": iters,
        "torch": str(torch.__version__),
        **extra,
    }


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description="SSL-GAN iteration time: naive eager vs optimized.")
    ap.add_argument("--preset", default="full", choices=["full", "small", "tiny"])
    ap.add_argument("--device", default="auto")
    ap.add_argument("--iters", type=int, default=50)
    ap.add_argument("--warmup", type=int, default=10)
    ap.add_argument("--no-bf16", action="store_true")
    ap.add_argument("--compile-mode", default="auto", help='"auto", "none", or a torch.compile mode')
    ap.add_argument("--budget-s", type=float, default=None, help="start no variant after this many seconds")
    ap.add_argument("--profile", action="store_true", help="print the heaviest GPU kernels (stderr)")
    ap.add_argument("--json", action="store_true", help="print one JSON object")
    args = ap.parse_args(argv)
    mode = None if args.compile_mode == "none" else args.compile_mode
    result = run(
        args.preset, args.device, args.iters, args.warmup, not args.no_bf16, mode, args.budget_s, args.profile
    )
    if args.json:
        print(json.dumps(result))
    else:
        for k, v in result.items():
            print(f"{k:22s} {v}")


if __name__ == "__main__":
    main()
