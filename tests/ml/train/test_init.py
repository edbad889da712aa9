"""Weight norm's data-dependent init, as the networks are trained afterwards.

The generator has batch norm: training normalises with the batch's statistics, so the init must
measure with them too. Measured in eval mode (running statistics still (0, 1)), the last layer's
scale was set for un-normalised activations and the tanh started saturated: samples were binary
noise of std 0.94 against the data's 0.67 (the defect found on 2026-11-28).
"""

from dataclasses import replace

import torch

from ml.models.discriminator import Discriminator, hidden_scales
from ml.models.generator import Generator
from ml.train.config import preset
from ml.train.loop import Streams, to_model_input
from ml.train.ssl_gan import SSLGANStep, init_networks, output_std


def _init(name: str) -> tuple[Discriminator, Generator]:
    model_cfg, _ = preset(name)
    torch.manual_seed(0)
    d, g = Discriminator(model_cfg), Generator(model_cfg)
    gen = torch.Generator().manual_seed(1)
    x_unl = torch.randint(0, 256, (64, 3, 32, 32), dtype=torch.uint8, generator=gen)
    init_networks(d, g, x_unl, torch.Generator().manual_seed(2), torch.device("cpu"))
    return d, g


def _pre_tanh(g: Generator, n: int = 256) -> torch.Tensor:
    """The last layer's output before the tanh, in training mode (batch statistics)."""
    seen: list[torch.Tensor] = []
    handle = g.body[-2].register_forward_hook(lambda _m, _i, out: seen.append(out))
    with torch.no_grad():
        g.train()(g.sample_noise(n, "cpu", torch.Generator().manual_seed(3)))
    handle.remove()
    return seen[0]


def test_the_generator_starts_with_unit_pre_activations_in_training_mode():
    for name in ("small", "full"):
        _, g = _init(name)
        pre = _pre_tanh(g)
        std = pre.std(dim=(0, 2, 3))  # per output channel, as the init sets it
        assert torch.allclose(std, torch.ones(3), atol=0.15), (name, std)
        out = torch.tanh(pre)
        assert (out.abs() > 0.99).float().mean() < 0.05, "the tanh starts saturated"


def test_the_init_leaves_the_generators_running_statistics_and_mode_alone():
    model_cfg, _ = preset("small")
    g = Generator(model_cfg).eval()
    before = {k: v.clone() for k, v in g.state_dict().items() if "running" in k or "num_batches" in k}
    d = Discriminator(model_cfg)
    x_unl = torch.randint(0, 256, (16, 3, 32, 32), dtype=torch.uint8)
    init_networks(d, g, x_unl, torch.Generator().manual_seed(0), torch.device("cpu"))
    after = {k: v for k, v in g.state_dict().items() if k in before}
    assert all(torch.equal(before[k], after[k]) for k in before)
    assert not g.training


def test_the_discriminator_starts_with_unit_pre_activations_on_the_data_without_dropout():
    d, _ = _init("full")  # the full preset has dropout 0.2 / 0.5: the init must measure without it
    first = d.body[1]
    seen: list[torch.Tensor] = []
    handle = first.register_forward_hook(lambda _m, _i, out: seen.append(out))
    x = to_model_input(
        torch.randint(0, 256, (64, 3, 32, 32), dtype=torch.uint8, generator=torch.Generator().manual_seed(1))
    )
    with torch.no_grad():
        d.eval()(x)
    handle.remove()
    std = seen[0].std(dim=(0, 2, 3))
    assert torch.allclose(std, torch.ones_like(std), atol=0.05)
    assert torch.allclose(seen[0].mean(dim=(0, 2, 3)), torch.zeros_like(std), atol=0.05)


def _one_step(wn_scales: str) -> tuple[Discriminator, dict, torch.Tensor]:
    """Networks initialised for ``wn_scales``, D's scales before one iteration, and D's logits
    on the init batch right after the init."""
    model_cfg, cfg = preset("tiny", batch_size=8)
    cfg = replace(cfg, wn_scales=wn_scales)
    torch.manual_seed(0)
    d, g = Discriminator(model_cfg), Generator(model_cfg)
    gen = torch.Generator().manual_seed(1)
    x = torch.randint(0, 256, (3, 8, 3, 32, 32), dtype=torch.uint8, generator=gen)
    init_networks(d, g, x[1], torch.Generator().manual_seed(2), torch.device("cpu"), out_std=output_std(cfg))
    with torch.no_grad():
        logits, _ = d.eval()(to_model_input(x[1]))
    d.train()
    head = d.head.parametrizations.weight.original0
    before = {"hidden": [p.clone() for p in hidden_scales(d)], "head": head.clone()}
    y = torch.randint(0, 2, (8,), generator=gen)
    SSLGANStep(d, g, cfg, torch.device("cpu"), Streams.from_seed(1))(x[0], y, x[1], x[2])
    return d, before, logits


def test_published_scales_keep_ds_hidden_scales_and_start_the_outputs_small():
    d, before, logits = _one_step("published")
    assert all(torch.equal(a, b) for a, b in zip(before["hidden"], hidden_scales(d), strict=True))
    assert not torch.equal(before["head"], d.head.parametrizations.weight.original0)  # the head's trains
    assert torch.allclose(logits.std(dim=0), torch.full((2,), 0.1), atol=0.01)


def test_trainable_scales_train_everywhere_and_start_the_outputs_at_unit_std():
    d, before, logits = _one_step("trainable")
    assert not any(torch.equal(a, b) for a, b in zip(before["hidden"], hidden_scales(d), strict=True))
    assert torch.allclose(logits.std(dim=0), torch.ones(2), atol=0.05)
