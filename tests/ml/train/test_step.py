"""The SSL-GAN iteration's modes: ``step="eager"`` everywhere, ``step="graph"`` (CUDA graphs) on a GPU.

The CUDA graph itself can only run on a GPU (``python -m ml.bench.train_speed`` times it there as
``whole_graph_compiled``); here: what makes a recorded step correct, i.e. Adam reading a learning
rate that changes in place, a capturable step computing what the plain one does, and refusals.
"""

import pytest
import torch

from ml.models.discriminator import Discriminator
from ml.models.generator import Generator
from ml.train import ssl_gan
from ml.train.config import TrainConfig, preset
from ml.train.loop import Streams, init_weights
from ml.train.toy import toy_train_data


def _step(capturable: bool) -> ssl_gan.SSLGANStep:
    model_cfg, cfg = preset("tiny", batch_size=8)
    torch.manual_seed(0)
    d, g = Discriminator(model_cfg), Generator(model_cfg)
    init_weights(d)
    init_weights(g)
    streams = Streams.from_seed(1)
    return ssl_gan.SSLGANStep(d, g, cfg, torch.device("cpu"), streams, fused=True, capturable=capturable)


def _batches(seed: int) -> tuple[torch.Tensor, ...]:
    gen = torch.Generator().manual_seed(seed)
    x = torch.randint(0, 256, (3, 8, 3, 32, 32), dtype=torch.uint8, generator=gen)
    return x[0], torch.randint(0, 2, (8,), generator=gen), x[1], x[2]


def test_a_capturable_step_keeps_its_learning_rate_on_the_device_and_changes_it_in_place():
    step = _step(capturable=True)
    lrs = [group["lr"] for opt in (step.opt_d, step.opt_g) for group in opt.param_groups]
    assert all(isinstance(lr, torch.Tensor) for lr in lrs)
    step.set_lr(0.25)
    after = [group["lr"] for opt in (step.opt_d, step.opt_g) for group in opt.param_groups]
    assert all(a is b for a, b in zip(lrs, after, strict=True))  # the very tensors a graph recorded
    assert all(float(lr) == pytest.approx(step.cfg.lr * 0.25) for lr in after)


def test_a_capturable_step_trains_like_the_plain_one():
    plain, captured = _step(capturable=False), _step(capturable=True)
    for i, factor in enumerate((1.0, 0.5, 0.0)):
        for step in (plain, captured):
            step.set_lr(factor)
            torch.manual_seed(i)  # the same dropout masks for both
            step(*_batches(i))
    for net in ("d", "g"):
        a, b = getattr(plain, net).state_dict(), getattr(captured, net).state_dict()
        assert all(torch.allclose(a[k], b[k], atol=1e-6) for k in a), net
    # and the zero learning rate of the last iteration really held: one more step at 0 changes nothing
    before = {k: v.clone() for k, v in captured.d.state_dict().items() if "running" not in k}
    captured(*_batches(9))
    assert all(torch.equal(before[k], captured.d.state_dict()[k]) for k in before)


def test_graph_steps_are_refused_off_a_gpu():
    with pytest.raises(ValueError, match="unknown step 'compiled'"):
        TrainConfig(step="compiled")
    model_cfg, cfg = preset("tiny", step="graph")
    with pytest.raises(ValueError, match="needs a CUDA device, not cpu; use 'eager'"):
        ssl_gan.train(toy_train_data(n_train=4, n_val=2, seed=1), cfg, device="cpu", model_cfg=model_cfg)
    with pytest.raises(ValueError, match="capturable=True on a CUDA device"):
        ssl_gan.GraphedStep(_step(capturable=True))


def _fm_step(fm_features: str) -> ssl_gan.SSLGANStep:
    model_cfg, cfg = preset("tiny", batch_size=8, fm_features=fm_features)
    torch.manual_seed(0)
    d, g = Discriminator(model_cfg), Generator(model_cfg)
    init_weights(d)
    init_weights(g)
    return ssl_gan.SSLGANStep(d, g, cfg, torch.device("cpu"), Streams.from_seed(1))


def test_spatial_feature_matching_compares_the_map_per_position():
    """Same networks, batches and dropout masks: the D step is identical, and the generator's loss
    is the L1 of the per-position batch-mean difference, never below the pooled one's (whose
    per-channel difference is the mean of the per-position ones)."""
    losses = {}
    for fm in ("pooled", "spatial"):
        torch.manual_seed(3)
        losses[fm] = _fm_step(fm)(*_batches(0))
    assert losses["spatial"]["d_sup"] == losses["pooled"]["d_sup"]
    assert losses["spatial"]["d_unsup"] == losses["pooled"]["d_unsup"]
    assert losses["spatial"]["g_fm"] > losses["pooled"]["g_fm"] * 1.05
    with pytest.raises(ValueError, match="unknown fm_features 'mean'"):
        TrainConfig(fm_features="mean")


@pytest.mark.parametrize("adam_eps", [1e-8, 1e-4])
def test_adams_epsilon_is_the_one_configured(adam_eps: float):
    """Adam's first step is lr * g / (|g| + eps) per weight: with the published code's floor
    (1e-4) weights with tiny gradients barely move, with PyTorch's default they move by lr."""
    model_cfg, cfg = preset("tiny", batch_size=8, adam_eps=adam_eps)
    torch.manual_seed(0)
    d, g = Discriminator(model_cfg), Generator(model_cfg)
    init_weights(d)
    init_weights(g)
    step = ssl_gan.SSLGANStep(d, g, cfg, torch.device("cpu"), Streams.from_seed(1))
    before = [p.detach().clone() for p in d.parameters()]
    torch.manual_seed(0)
    step(*_batches(0))
    for p, p0 in zip(d.parameters(), before, strict=True):
        want = p0 - cfg.lr * p.grad / (p.grad.abs() + adam_eps)
        assert torch.allclose(p.detach(), want, rtol=0, atol=cfg.lr * 1e-3)
    grads = torch.cat([p.grad.flatten().abs() for p in d.parameters()])
    assert (grads < 1e-5).any() and (grads > 1e-3).any()  # both regimes are exercised


def test_the_generators_learning_rate_is_scaled_and_follows_the_schedule():
    """With g_lr_scale the generator's Adam steps are that fraction of the discriminator's, at
    every point of the learning-rate schedule (a first Adam step moves each weight by about lr)."""
    model_cfg, cfg = preset("tiny", batch_size=8, g_lr_scale=0.25)
    torch.manual_seed(0)
    d, g = Discriminator(model_cfg), Generator(model_cfg)
    init_weights(d)
    init_weights(g)
    step = ssl_gan.SSLGANStep(d, g, cfg, torch.device("cpu"), Streams.from_seed(1))
    step.set_lr(0.5)
    assert [grp["lr"] for grp in step.opt_d.param_groups] == [cfg.lr * 0.5]
    assert [grp["lr"] for grp in step.opt_g.param_groups] == [cfg.lr * 0.25 * 0.5]
    before = [p.detach().clone() for p in g.parameters()]
    step(*_batches(0))
    for p, p0 in zip(g.parameters(), before, strict=True):
        want = p0 - cfg.lr * 0.25 * 0.5 * p.grad / (p.grad.abs() + cfg.adam_eps)
        assert torch.allclose(p.detach(), want, rtol=0, atol=cfg.lr * 1e-3)
    with pytest.raises(ValueError, match="g_lr_scale must be positive"):
        TrainConfig(g_lr_scale=0.0)


def test_adams_epsilon_must_be_positive():
    with pytest.raises(ValueError, match="adam_eps must lie in"):
        TrainConfig(adam_eps=0.0)
