"""Common random numbers: the SSL-GAN trainer with its unlabeled term off is the ConvNet trainer.

Both draw their initial weights, labeled batches and augmentations from the same streams
(``ml.train.loop.Streams``), so without dropout (whose masks come from torch's global generator)
and with ``unlabeled_weight=0`` they must end at the same discriminator up to rounding: any
difference between the two learners in a benchmark is then the unlabeled term's, not a draw's.
"""

from dataclasses import replace

import numpy as np
import pytest
import torch

from ml.train import ssl_gan, supervised
from ml.train.config import preset
from ml.train.loop import Streams
from ml.train.toy import toy_train_data


def _both(**train_overrides):
    model_cfg, cfg = preset("tiny", epochs=3, **train_overrides)
    model_cfg = replace(model_cfg, input_dropout=0.0, dropout=0.0)
    data = toy_train_data(n_train=6, n_val=2, seed=4, labeled_images=2)
    gan = ssl_gan.train(data, cfg, device="cpu", model_cfg=model_cfg)
    conv = supervised.train(data, cfg, device="cpu", model_cfg=model_cfg, method="convnet")
    return gan, conv


def _max_abs_diff(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> float:
    assert a.keys() == b.keys()
    return max(float((a[k].float() - b[k].float()).abs().max()) for k in a)


def test_term_off_ssl_gan_and_convnet_train_the_same_discriminator():
    gan, conv = _both(unlabeled_weight=0.0)
    assert _max_abs_diff(gan.state_dict, conv.state_dict) < 1e-5
    assert gan.best_epoch == conv.best_epoch
    assert gan.threshold == pytest.approx(conv.threshold, abs=1e-4)
    for k in ("patch_auc", "image_auc"):
        assert gan.val_metrics[k] == pytest.approx(conv.val_metrics[k], abs=1e-6)


def test_with_the_term_on_the_two_learners_part():
    """The check above can fail: the unlabeled term moves the discriminator away from the ConvNet."""
    gan, conv = _both(unlabeled_weight=1.0)
    assert _max_abs_diff(gan.state_dict, conv.state_dict) > 1e-3


def test_streams_from_one_seed_are_independent_and_reproducible():
    a, b = Streams.from_seed(0), Streams.from_seed(0)
    draws = [torch.rand(4, generator=g) for g in (a.init, a.labeled, a.unlabeled, *a.device_generators())]
    again = [torch.rand(4, generator=g) for g in (b.init, b.labeled, b.unlabeled, *b.device_generators())]
    assert all(torch.equal(x, y) for x, y in zip(draws, again, strict=True))
    firsts = np.array([float(x[0]) for x in draws])
    assert len(np.unique(firsts)) == len(firsts)  # six different streams
    other = Streams.from_seed(1)
    assert not torch.equal(torch.rand(4, generator=other.init), draws[0])
