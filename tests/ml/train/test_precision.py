"""``TrainConfig.precision``: bf16 autocast of the training forward passes, never of evaluation."""

import pytest
import torch

from ml.train import ssl_gan, supervised
from ml.train.config import TrainConfig, preset
from ml.train.toy import toy_train_data


def test_precision_is_checked_and_old_configs_read_as_fp32():
    with pytest.raises(ValueError, match="unknown precision 'fp16'"):
        TrainConfig(precision="fp16")
    old = {k: v for k, v in TrainConfig().to_dict().items() if k != "precision"}
    assert TrainConfig.from_dict(old).precision == "fp32"


def _autocast_states(monkeypatch, module, attr, run) -> list[bool]:
    """Whether CPU autocast was on at each forward pass of the network that ``module.attr`` builds."""
    seen: list[bool] = []
    real = getattr(module, attr)

    def spy(*a, **k):
        net = real(*a, **k)
        net.register_forward_pre_hook(lambda m, x: seen.append(torch.is_autocast_enabled("cpu")))
        return net

    monkeypatch.setattr(module, attr, spy)
    run()
    return seen


@pytest.mark.parametrize("precision", ["fp32", "bf16"])
def test_ssl_gan_trains_under_autocast_only_with_bf16(monkeypatch, precision):
    model_cfg, cfg = preset("tiny", epochs=1, precision=precision)
    data = toy_train_data(n_train=4, n_val=2, seed=1)
    results = []
    seen = _autocast_states(
        monkeypatch,
        ssl_gan,
        "Discriminator",
        lambda: results.append(ssl_gan.train(data, cfg, device="cpu", model_cfg=model_cfg)),
    )
    # The training passes follow the setting; evaluation (validation, threshold) is always fp32.
    assert (True in seen) == (precision == "bf16") and False in seen
    (result,) = results
    assert result.train_cfg.precision == precision
    assert all(torch.isfinite(v).all() for v in result.state_dict.values() if v.is_floating_point())


@pytest.mark.parametrize("precision", ["fp32", "bf16"])
@pytest.mark.parametrize("method", ["convnet", "resnet34"])
def test_baselines_train_under_autocast_only_with_bf16(monkeypatch, method, precision):
    data = toy_train_data(n_train=4, n_val=2, seed=1)
    model_cfg, cfg = preset("tiny", epochs=1, precision=precision)
    seen = _autocast_states(
        monkeypatch,
        supervised,
        "build_classifier",
        lambda: supervised.train(data, cfg, device="cpu", model_cfg=model_cfg, method=method),
    )
    assert (True in seen) == (precision == "bf16") and False in seen
