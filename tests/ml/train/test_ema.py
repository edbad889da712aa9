import torch
from torch import nn

from ml.train.ema import EMA


def test_ema_update_follows_the_formula_after_warmup():
    torch.manual_seed(0)
    model = nn.Linear(3, 2)
    ema = EMA(model, decay=0.9)
    ema.steps = 1000  # past the warm-up: decay is exactly 0.9
    before = [p.detach().clone() for p in ema.module.parameters()]
    with torch.no_grad():
        for p in model.parameters():
            p.add_(1.0)
    ema.update(model)
    for b, p, e in zip(before, model.parameters(), ema.module.parameters(), strict=True):
        torch.testing.assert_close(e, 0.9 * b + 0.1 * p.detach())


def test_ema_warmup_uses_the_smaller_decay_and_never_trains():
    model = nn.Linear(2, 1)
    ema = EMA(model, decay=0.999)
    old = ema.module.weight.detach().clone()
    with torch.no_grad():
        model.weight.fill_(5.0)
    ema.update(model)  # step 0: decay min(0.999, 1/10) = 0.1
    torch.testing.assert_close(ema.module.weight, 0.1 * old + 0.9 * 5.0)
    assert not any(p.requires_grad for p in ema.module.parameters())
    assert not ema.module.training


def test_ema_copies_buffers():
    model = nn.BatchNorm1d(3)
    ema = EMA(model)
    model.running_mean.fill_(2.0)
    ema.update(model)
    assert torch.equal(ema.module.running_mean, model.running_mean)
