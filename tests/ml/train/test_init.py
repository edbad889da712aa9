"""Weight norm's data-dependent init, as the networks are trained afterwards.

The generator has batch norm: training normalises with the batch's statistics, so the init must
measure with them too. Measured in eval mode (running statistics still (0, 1)), the last layer's
scale was set for un-normalised activations and the tanh started saturated: samples were binary
noise of std 0.94 against the data's 0.67 (the defect found on 2026-11-28).
"""

import torch

from ml.models.discriminator import Discriminator
from ml.models.generator import Generator
from ml.train.config import preset
from ml.train.loop import to_model_input
from ml.train.ssl_gan import init_networks


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
    x = to_model_input(torch.randint(0, 256, (64, 3, 32, 32), dtype=torch.uint8,
                                     generator=torch.Generator().manual_seed(1)))
    with torch.no_grad():
        d.eval()(x)
    handle.remove()
    std = seen[0].std(dim=(0, 2, 3))
    assert torch.allclose(std, torch.ones_like(std), atol=0.05)
    assert torch.allclose(seen[0].mean(dim=(0, 2, 3)), torch.zeros_like(std), atol=0.05)
