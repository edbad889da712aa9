"""Training the patch SSL-GAN (feature matching, Salimans et al. 2016) as in the method's Table 6.

One iteration: a discriminator step on a batch of labeled patches (cross entropy over the K real
classes), a batch of unlabeled patches and a batch of generated patches (the real-vs-fake term),
then a generator step (feature matching against another unlabeled batch), then the EMA update of
D's weights. An epoch is one pass over the unlabeled patches; the labeled patches are tiled to the
same length. Adam (lr 3e-4, beta1 0.5), lr linear to 0 over the last third. Every evaluation and
the returned model use the EMA weights; with validation data the best EMA snapshot (validation
image AUC, then patch AUC) is kept, because GAN training can collapse late in a run.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable

import numpy as np
import torch

from ml.models.discriminator import Discriminator, hidden_scales
from ml.models.generator import Generator
from ml.train.augment import pad_crop_flip
from ml.train.config import ModelConfig, TrainConfig, preset
from ml.train.ema import EMA
from ml.train.loop import (
    Progress,
    Reporter,
    Selection,
    Streams,
    TrainData,
    TrainingCancelled,
    TrainResult,
    amp_dtype,
    data_dependent_init,
    epoch_indices,
    finish,
    for_model,
    init_classifier,
    init_weights,
    labeled_indices,
    lr_factor,
    resolve_device,
    to_model_input,
)
from ml.train.losses import feature_matching_loss, supervised_loss, unsupervised_loss


def default_configs(device: torch.device) -> tuple[ModelConfig, TrainConfig]:
    """The full model on a GPU, the small preset on a CPU."""
    return preset("full" if device.type == "cuda" else "small")


def labeled_arrays(data: TrainData) -> tuple[np.ndarray, np.ndarray]:
    flat = data.patches.reshape(-1, *data.patches.shape[-3:])
    labels = data.patch_labels.reshape(-1)
    keep = labels >= 0
    y = labels[keep].astype(np.int64)
    if not ((y == 0).any() and (y == 1).any()):
        raise ValueError(
            f"training needs at least one healthy and one diseased labeled patch; got "
            f"{int((y == 0).sum())} healthy and {int((y == 1).sum())} diseased"
        )
    return flat[keep], y


def unlabeled_array(data: TrainData) -> np.ndarray:
    flat = data.patches.reshape(-1, *data.patches.shape[-3:])
    if data.extra_unlabeled is not None and len(data.extra_unlabeled):
        flat = np.concatenate([flat, data.extra_unlabeled])
    return flat


def iters_per_epoch(n_unlabeled: int, cfg: TrainConfig) -> int:
    n = max(1, n_unlabeled // cfg.batch_size)
    return min(n, cfg.max_iters_per_epoch) if cfg.max_iters_per_epoch else n


class SSLGANStep:
    """One training iteration, kept apart from the loop so the speed benchmark times the same code."""

    def __init__(
        self,
        d: Discriminator,
        g: Generator,
        cfg: TrainConfig,
        device: torch.device,
        streams: Streams | None = None,
        fused: bool = False,
        amp_dtype: torch.dtype | None = None,
        capturable: bool = False,
    ) -> None:
        self.d, self.g, self.cfg, self.device = d, g, cfg, device
        # The iteration's three device streams (torch's global generator when None).
        self.lab_gen, self.unl_gen, self.noise_gen = streams.device_generators() if streams else (None,) * 3
        self.amp_dtype = amp_dtype  # bf16 autocast of the forward passes (benchmarked, off by default)
        # capturable: the whole step may be recorded as one CUDA graph (ml.bench.train_speed), so
        # Adam keeps its step count on the device and autocast must not cache casted weights.
        self.capturable = capturable
        kw = {"fused": True} if fused else {}
        kw |= {"capturable": True} if capturable else {}

        def lr(base: float) -> float | torch.Tensor:  # a captured step reads it from the device
            return torch.tensor(base, device=device) if capturable else base

        fixed = {id(p) for p in hidden_scales(d)} if cfg.wn_scales == "published" else set()
        d_params = [p for p in d.parameters() if id(p) not in fixed]
        kw |= {"betas": (cfg.beta1, 0.999), "eps": cfg.adam_eps}
        g_lr = cfg.lr * cfg.g_lr_scale
        self.opt_d = torch.optim.Adam(d_params, lr=lr(cfg.lr), **kw)
        self.opt_g = torch.optim.Adam(g.parameters(), lr=lr(g_lr), **kw)
        self.base_lrs = ((self.opt_d, cfg.lr), (self.opt_g, g_lr))  # what the schedule scales

    def set_lr(self, factor: float) -> None:
        for opt, base in self.base_lrs:
            for group in opt.param_groups:
                if isinstance(group["lr"], torch.Tensor):
                    group["lr"].fill_(base * factor)  # in place: a replayed graph sees it
                else:
                    group["lr"] = base * factor

    def _aug(self, x: torch.Tensor, gen: torch.Generator | None) -> torch.Tensor:
        x = to_model_input(x)
        return pad_crop_flip(x, self.cfg.crop_pad, gen) if self.cfg.augment else x

    def __call__(
        self, x_lab: torch.Tensor, y_lab: torch.Tensor, x_unl: torch.Tensor, x_unl2: torch.Tensor
    ) -> dict[str, torch.Tensor]:
        """Inputs are uint8 batches on the device; returns the losses as (unsynced) tensors."""
        d, g, bs = self.d, self.g, x_unl.shape[0]
        amp = torch.autocast(
            self.device.type,
            dtype=self.amp_dtype or torch.bfloat16,
            enabled=self.amp_dtype is not None,
            cache_enabled=not self.capturable,
        )
        # Discriminator step: one forward over [labeled | unlabeled | generated] (D has no batch norm).
        with torch.no_grad(), amp:
            x_gen = g(g.sample_noise(bs, self.device, self.noise_gen))
        xl, xu = self._aug(x_lab, self.lab_gen), self._aug(x_unl, self.unl_gen)
        with amp:
            logits, _ = d(torch.cat([xl, xu, x_gen.to(xl.dtype)]))
        logits = logits.float()
        l_lab, l_unl, l_gen = logits.split([xl.shape[0], bs, bs])
        loss_sup = supervised_loss(l_lab, y_lab)
        loss_unsup = unsupervised_loss(l_unl, l_gen)
        loss_d = loss_sup + self.cfg.unlabeled_weight * loss_unsup
        self.opt_d.zero_grad(set_to_none=True)
        loss_d.backward()
        self.opt_d.step()
        # Generator step: feature matching against another unlabeled batch; D's weights get no grads.
        d.requires_grad_(False)
        spatial = self.cfg.fm_features == "spatial"
        with torch.no_grad(), amp:
            _, f_real = d(self._aug(x_unl2, self.unl_gen), spatial=spatial)
        with amp:
            _, f_fake = d(g(g.sample_noise(bs, self.device, self.noise_gen)), spatial=spatial)
        loss_g = feature_matching_loss(f_real.float(), f_fake.float())
        self.opt_g.zero_grad(set_to_none=True)
        loss_g.backward()
        self.opt_g.step()
        d.requires_grad_(True)
        with torch.no_grad():
            acc = (l_lab.argmax(1) == y_lab).float().mean()
        return {
            "d_sup": loss_sup.detach(),
            "d_unsup": loss_unsup.detach(),
            "g_fm": loss_g.detach(),
            "train_acc": acc,
        }


class GraphedStep:
    """An ``SSLGANStep`` (built ``capturable=True``) run as one CUDA graph: the first ``warmup``
    calls run eagerly on a side stream (compiling, cuDNN autotuning, Adam's state), the next one
    records the whole iteration and every later one copies its batches into the recorded inputs
    and replays it. Each call is still exactly one training iteration on its own batches; the
    returned losses are the graph's output tensors, overwritten by the next call.
    """

    def __init__(self, step: SSLGANStep, warmup: int = 3) -> None:
        if not step.capturable or step.device.type != "cuda":
            raise ValueError("GraphedStep needs an SSLGANStep built with capturable=True on a CUDA device")
        self.step, self.warmup, self.calls = step, warmup, 0
        self.graph: torch.cuda.CUDAGraph | None = None
        self.static: tuple[torch.Tensor, ...] = ()
        self.out: dict[str, torch.Tensor] = {}

    def set_lr(self, factor: float) -> None:
        self.step.set_lr(factor)

    def __call__(self, *batches: torch.Tensor) -> dict[str, torch.Tensor]:
        self.calls += 1
        if self.calls <= self.warmup:
            side = torch.cuda.Stream()
            side.wait_stream(torch.cuda.current_stream())
            with torch.cuda.stream(side):
                out = self.step(*batches)
            torch.cuda.current_stream().wait_stream(side)
            return out
        if self.graph is None:
            self.static = tuple(b.clone() for b in batches)
            self.graph = torch.cuda.CUDAGraph()
            step = self.step
            for gen in (step.lab_gen, step.unl_gen, step.noise_gen):  # ours must be known to the graph
                if gen is not None:
                    self.graph.register_generator_state(gen)
            with torch.cuda.graph(self.graph):
                self.out = self.step(*self.static)
        else:
            for dst, src in zip(self.static, batches, strict=True):
                if dst.data_ptr() != src.data_ptr():
                    dst.copy_(src)
        self.graph.replay()  # capture only records: this is the iteration's update, also the first time
        return self.out


def make_step(
    d: Discriminator, g: Generator, cfg: TrainConfig, device: torch.device, streams: Streams | None
) -> SSLGANStep | GraphedStep:
    """The iteration ``cfg.step`` asks for: eager, or compiled and replayed as one CUDA graph."""
    if cfg.step == "eager":
        return SSLGANStep(d, g, cfg, device, streams, fused=device.type == "cuda", amp_dtype=amp_dtype(cfg))
    if device.type != "cuda":
        raise ValueError(
            f"step 'graph' replays CUDA graphs and needs a CUDA device, not {device}; use 'eager'"
        )
    torch._dynamo.reset()  # a fresh network per run: never past dynamo's recompile limit
    d.to(memory_format=torch.channels_last)
    g.to(memory_format=torch.channels_last)
    compiled_d, compiled_g = torch.compile(d), torch.compile(g)  # same parameters, fused kernels
    step = SSLGANStep(
        compiled_d, compiled_g, cfg, device, streams, fused=True, amp_dtype=amp_dtype(cfg), capturable=True
    )
    return GraphedStep(step)


def init_networks(
    d: Discriminator,
    g: Generator,
    x_unl: torch.Tensor,
    gen: torch.Generator,
    device: torch.device,
    n: int = 500,
    out_std: float = 1.0,
) -> None:
    """N(0, 0.05) weights, zero biases, then weight norm's data-dependent init on one batch;
    ``out_std``: the starting std of both networks' output layers (0.1 with published scales).
    D first and from ``gen`` alone (``init_classifier``, as the ConvNet), then G."""
    init_classifier(d, x_unl, gen, device, n=n, last_std=out_std)
    init_weights(g, generator=gen)
    z = g.sample_noise(min(n, 256), device)
    data_dependent_init(g, lambda: g(z), last_std=out_std)


def output_std(cfg: TrainConfig) -> float:
    return 0.1 if cfg.wn_scales == "published" else 1.0


def train(
    data: TrainData,
    cfg: TrainConfig | None = None,
    device: str | torch.device | None = None,
    on_progress: Callable[[Progress], None] | None = None,
    should_stop: Callable[[], bool] | None = None,
    model_cfg: ModelConfig | None = None,
) -> TrainResult:
    """Train the SSL-GAN on ``data``; returns the (selected) EMA discriminator and its threshold.

    Missing configs come from the device's default preset (``full`` on CUDA, ``small`` on CPU).
    ``should_stop`` is polled every iteration; when it returns True, ``TrainingCancelled`` is raised.
    Deterministic for a given seed on CPU.
    """
    t0 = time.perf_counter()
    dev = resolve_device(device)
    default_model, default_train = default_configs(dev)
    cfg, model_cfg = cfg or default_train, model_cfg or default_model
    data = for_model(data, model_cfg)
    x_lab_np, y_lab_np = labeled_arrays(data)
    x_unl_np = unlabeled_array(data)

    torch.manual_seed(cfg.seed)  # dropout's masks; every other draw has its own stream
    streams = Streams.from_seed(cfg.seed, dev)  # host streams: batch order identical on every device
    d, g = Discriminator(model_cfg).to(dev), Generator(model_cfg).to(dev)
    x_lab = torch.from_numpy(x_lab_np).to(dev)  # data stays on the device as uint8
    y_lab = torch.from_numpy(y_lab_np).to(dev)
    x_unl = torch.from_numpy(x_unl_np).to(dev)
    init_networks(d, g, x_unl, streams.init, dev, out_std=output_std(cfg))
    ema = EMA(d, cfg.ema_decay)
    step = make_step(d, g, cfg, dev, streams)
    ipe = iters_per_epoch(len(x_unl_np), cfg)
    total = cfg.epochs * ipe
    bs = cfg.batch_size
    report = Reporter(cfg.epochs, ipe, on_progress)

    selection = Selection(data, cfg, dev)
    history: list[dict] = []
    it = 0
    d.train()
    g.train()
    for epoch in range(1, cfg.epochs + 1):
        il = labeled_indices(y_lab, ipe * bs, streams.labeled, cfg.labeled_sampling).to(dev)
        iu = epoch_indices(len(x_unl_np), ipe * bs, streams.unlabeled).to(dev)
        iu2 = epoch_indices(len(x_unl_np), ipe * bs, streams.unlabeled).to(dev)
        sums: dict[str, torch.Tensor] = {}
        for b in range(ipe):
            if should_stop is not None and should_stop():
                raise TrainingCancelled(epoch, it)
            step.set_lr(lr_factor(it, total, cfg.lr_decay_start))
            sl = slice(b * bs, (b + 1) * bs)
            losses = step(x_lab[il[sl]], y_lab[il[sl]], x_unl[iu[sl]], x_unl[iu2[sl]])
            ema.update(d)
            for k, v in losses.items():
                sums[k] = sums.get(k, 0) + v
            it += 1
            if on_progress is not None and b % 10 == 9 and b < ipe - 1:
                report(epoch, it, {k: float(v) / (b + 1) for k, v in sums.items()})
        mean_losses = {k: float(v) / ipe for k, v in sums.items()}
        if not all(math.isfinite(v) for v in mean_losses.values()):
            raise FloatingPointError(f"training diverged at epoch {epoch}: losses {mean_losses}")
        val = selection.observe(epoch, ema.module)
        history.append(report(epoch, it, mean_losses, val, force=True).to_dict())

    return finish(
        "ssl-gan",
        selection.model if selection.model is not None else ema.module,
        best_epoch=selection.epoch,
        epochs_run=cfg.epochs,
        history=history,
        best_val=selection.val,
        data=data,
        cfg=cfg,
        model_cfg=model_cfg,
        device=dev,
        t0=t0,
    )
