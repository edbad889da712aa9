import pytest
import torch

from ml.models import build_classifier
from ml.models.discriminator import Discriminator
from ml.models.generator import Generator
from ml.models.resnet import ResNet34
from ml.train.config import ModelConfig, preset


def test_discriminator_shapes_and_layers():
    cfg = ModelConfig()
    d = Discriminator(cfg).eval()
    logits, feats = d(torch.randn(3, 3, 32, 32))
    assert logits.shape == (3, 2) and feats.shape == (3, 192)
    convs = [m for m in d.modules() if isinstance(m, torch.nn.Conv2d)]
    assert [c.out_channels for c in convs] == [96] * 3 + [192] * 7
    assert [c.kernel_size[0] for c in convs] == [3] * 8 + [1, 1]
    assert [c.stride[0] for c in convs] == [1, 1, 2, 1, 1, 2, 1, 1, 1, 1]
    assert [c.padding[0] for c in convs] == [1] * 6 + [0] * 4
    assert all(hasattr(c, "parametrizations") for c in convs)


def test_discriminator_pooling_option():
    """``pool="max"`` keeps the strongest cell of the last 4x4 map; "mean" averages all 16."""
    torch.manual_seed(0)
    mean_d = Discriminator(ModelConfig(d_widths=(8, 16))).eval()
    max_d = Discriminator(ModelConfig(d_widths=(8, 16), pool="max")).eval()
    max_d.load_state_dict(mean_d.state_dict())  # same weights: only the pooling differs
    x = torch.randn(2, 3, 32, 32)
    last = mean_d.body(x)
    assert last.shape[-2:] == (4, 4)
    assert torch.allclose(mean_d(x)[1], last.mean(dim=(2, 3)))
    assert torch.allclose(max_d(x)[1], last.amax(dim=(2, 3)))
    logits, spatial = mean_d(x, spatial=True)  # the map the generator's feature matching may compare
    assert torch.equal(spatial, last) and torch.equal(logits, mean_d(x)[0])
    with pytest.raises(ValueError, match="unknown pool"):
        ModelConfig(pool="median")


def test_generator_outputs_model_resolution_in_tanh_range():
    cfg, _ = preset("small")
    g = Generator(cfg)
    x = g(g.sample_noise(4, "cpu"))
    assert x.shape == (4, 3, 32, 32)
    assert x.abs().max() <= 1.0
    big = Generator(ModelConfig())
    assert big.dense[0].out_features == 4 * 4 * 512


def test_resnet34_block_layout():
    r = ResNet34(width=8)
    blocks = [m for m in r.stages]
    assert len(blocks) == 3 + 4 + 6 + 3
    logits, _ = r.eval()(torch.randn(2, 3, 32, 32))
    assert logits.shape == (2, 1)
    assert isinstance(build_classifier("resnet34", ModelConfig(resnet_width=8)), ResNet34)
