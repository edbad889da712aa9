"""The supervised baselines, through the same patch pipeline and image-level aggregation.

- ``convnet``: the SSL-GAN's discriminator (Table 3) trained on the labeled patches only, no
  generator and no unlabeled term, with the SSL-GAN's optimiser, schedule, augmentation, EMA,
  validation-based selection and random streams (``ml.train.loop.Streams``: same initial weights,
  labeled batches and augmentations for the same seed), so that the difference to the SSL-GAN
  is the unlabeled data alone.
- ``resnet34``: BasicBlock [3, 4, 6, 3] with the method's Table 5 settings: Adam lr 1e-5,
  balanced class-weighted binary cross-entropy, early stopping with patience 20 epochs on the
  validation loss (best weights kept), learning rate x0.1 after 10 epochs without improvement,
  augmentation rotation 0-180 degrees, flips and shifts up to 30 %. An epoch is one pass over
  the labeled patches; ``TrainConfig.epochs`` caps the number of epochs.
"""

from __future__ import annotations

import copy
import math
import time
from collections.abc import Callable

import numpy as np
import torch
import torch.nn.functional as F

from ml.models import build_classifier
from ml.train.augment import affine_flip, pad_crop_flip
from ml.train.config import ModelConfig, TrainConfig
from ml.train.ema import EMA
from ml.train.loop import (
    Progress,
    Reporter,
    Selection,
    Streams,
    TrainData,
    TrainingCancelled,
    TrainResult,
    autocast,
    finish,
    for_model,
    init_classifier,
    labeled_indices,
    lr_factor,
    resolve_device,
    to_model_input,
)
from ml.train.losses import supervised_loss
from ml.train.ssl_gan import default_configs, iters_per_epoch, labeled_arrays, unlabeled_array

METHODS = ("convnet", "resnet34")


def train(
    data: TrainData,
    cfg: TrainConfig | None = None,
    device: str | torch.device | None = None,
    on_progress: Callable[[Progress], None] | None = None,
    should_stop: Callable[[], bool] | None = None,
    model_cfg: ModelConfig | None = None,
    method: str = "convnet",
) -> TrainResult:
    """Train a supervised baseline; same signature and result as ``ml.train.ssl_gan.train``."""
    if method not in METHODS:
        raise ValueError(f"unknown supervised method {method!r}; choose one of {', '.join(METHODS)}")
    t0 = time.perf_counter()
    dev = resolve_device(device)
    default_model, default_train = default_configs(dev)
    cfg, model_cfg = cfg or default_train, model_cfg or default_model
    data = for_model(data, model_cfg)
    torch.manual_seed(cfg.seed)  # the ResNet34's default init and dropout's masks
    streams = Streams.from_seed(cfg.seed, dev)  # the SSL-GAN trainer's streams for the same seed
    x_np, y_np = labeled_arrays(data)
    x_lab = torch.from_numpy(x_np).to(dev)
    y_lab = torch.from_numpy(y_np).to(dev)
    model = build_classifier(method, model_cfg).to(dev)
    run = _train_convnet if method == "convnet" else _train_resnet
    selected, best_epoch, epochs_run, history, best_val = run(
        model, data, cfg, dev, x_lab, y_lab, streams, on_progress, should_stop
    )
    return finish(
        method,
        selected,
        best_epoch=best_epoch,
        epochs_run=epochs_run,
        history=history,
        best_val=best_val,
        data=data,
        cfg=cfg,
        model_cfg=model_cfg,
        device=dev,
        t0=t0,
    )


def _train_convnet(model, data, cfg, dev, x_lab, y_lab, streams, on_progress, should_stop):
    x_unl = unlabeled_array(data)
    init_classifier(model, x_unl, streams.init, dev)  # the SSL-GAN's D starts from these weights
    ema = EMA(model, cfg.ema_decay)
    opt = torch.optim.Adam(model.parameters(), lr=cfg.lr, betas=(cfg.beta1, 0.999), fused=dev.type == "cuda")
    ipe = iters_per_epoch(len(x_unl), cfg)  # same iterations as the SSL-GAN on the same data
    total, bs = cfg.epochs * ipe, cfg.batch_size
    report = Reporter(cfg.epochs, ipe, on_progress)
    selection, history, it = Selection(data, cfg, dev), [], 0
    model.train()
    for epoch in range(1, cfg.epochs + 1):
        il = labeled_indices(y_lab, ipe * bs, streams.labeled, cfg.labeled_sampling).to(dev)
        loss_sum = torch.zeros((), device=dev)
        for b in range(ipe):
            if should_stop is not None and should_stop():
                raise TrainingCancelled(epoch, it)
            for g in opt.param_groups:
                g["lr"] = cfg.lr * lr_factor(it, total, cfg.lr_decay_start)
            idx = il[b * bs : (b + 1) * bs]
            x = to_model_input(x_lab[idx])
            x = pad_crop_flip(x, cfg.crop_pad, streams.labeled_aug) if cfg.augment else x
            with autocast(dev, cfg):
                logits = model(x)[0]
            loss = supervised_loss(logits.float(), y_lab[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            ema.update(model)
            loss_sum += loss.detach()
            it += 1
        losses = {"sup": float(loss_sum) / ipe}
        if not math.isfinite(losses["sup"]):
            raise FloatingPointError(f"training diverged at epoch {epoch}")
        val = selection.observe(epoch, ema.module)
        history.append(report(epoch, it, losses, val, force=True).to_dict())
    selected = selection.model if selection.model is not None else ema.module
    return selected, selection.epoch, cfg.epochs, history, selection.val


def _train_resnet(model, data, cfg, dev, x_lab, y_lab, streams, on_progress, should_stop):
    pos = float((y_lab == 1).sum())
    neg = float((y_lab == 0).sum())
    pos_weight = torch.tensor(neg / max(pos, 1.0), device=dev)  # balanced class weights
    opt = torch.optim.Adam(model.parameters(), lr=cfg.sup_lr, fused=dev.type == "cuda")
    sched = torch.optim.lr_scheduler.ReduceLROnPlateau(opt, factor=0.1, patience=cfg.plateau_patience)
    bs = cfg.batch_size
    ipe = max(1, math.ceil(len(x_lab) / bs))
    report = Reporter(cfg.epochs, ipe, on_progress)
    val_x = val_y = None
    if data.has_val and data.val_patch_labels is not None:
        flat = data.val_patches.reshape(-1, *data.val_patches.shape[-3:])
        lab = data.val_patch_labels.reshape(-1)
        val_x = torch.from_numpy(flat[lab >= 0]).to(dev)
        val_y = torch.from_numpy(lab[lab >= 0].astype(np.float32)).to(dev)
    best_loss, best_state, best_epoch, stale, history, it = math.inf, None, 0, 0, [], 0
    for epoch in range(1, cfg.epochs + 1):
        model.train()
        order = torch.randperm(len(x_lab), generator=streams.labeled).to(dev)
        loss_sum = torch.zeros((), device=dev)
        for b in range(ipe):
            if should_stop is not None and should_stop():
                raise TrainingCancelled(epoch, it)
            idx = order[b * bs : (b + 1) * bs]
            x = to_model_input(x_lab[idx])
            x = affine_flip(x, 0.3, streams.labeled_aug) if cfg.augment else x
            with autocast(dev, cfg):
                logit = model(x)[0][:, 0]
            # The loss in fp32 whatever precision the forward pass ran in.
            loss = F.binary_cross_entropy_with_logits(
                logit.float(), y_lab[idx].float(), pos_weight=pos_weight
            )
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            loss_sum += loss.detach()
            it += 1
        losses = {"bce": float(loss_sum) / ipe}
        val = None
        if val_x is not None:
            val_loss = _val_loss(model, val_x, val_y, pos_weight)
            losses["val_bce"] = val_loss
            sched.step(val_loss)
            if val_loss < best_loss:
                best_loss, best_state, best_epoch, stale = (
                    val_loss,
                    copy.deepcopy(model.state_dict()),
                    epoch,
                    0,
                )
            else:
                stale += 1
        history.append(report(epoch, it, losses, val, force=True).to_dict())
        if val_x is not None and stale >= cfg.patience:
            break
    if best_state is not None:
        model.load_state_dict(best_state)
    return model.eval(), best_epoch or epoch, epoch, history, None


@torch.no_grad()
def _val_loss(model, x, y, pos_weight, batch: int = 4096) -> float:
    model.eval()
    total = 0.0
    for i in range(0, len(x), batch):
        logit = model(to_model_input(x[i : i + batch]))[0][:, 0]
        total += float(
            F.binary_cross_entropy_with_logits(
                logit, y[i : i + batch], pos_weight=pos_weight, reduction="sum"
            )
        )
    model.train()
    return total / len(x)
