from collections import Counter

import pytest
import torch

from ml.train import ssl_gan, supervised
from ml.train.config import TrainConfig, preset
from ml.train.loop import epoch_indices, labeled_indices
from ml.train.toy import toy_train_data


def _gen() -> torch.Generator:
    return torch.Generator().manual_seed(7)


def test_tiled_sampling_is_the_plain_epoch_order():
    y = torch.tensor([0] * 7 + [1])
    assert torch.equal(labeled_indices(y, 100, _gen(), "tiled"), epoch_indices(8, 100, _gen()))


def test_balanced_sampling_gives_each_class_an_equal_share_spread_over_its_members():
    y = torch.tensor([0] * 7 + [1] * 2)  # seven healthy patches, two diseased
    idx = labeled_indices(y, 100, _gen(), "balanced")
    assert len(idx) == 100 and set(idx.tolist()) == set(range(9))
    per_class = Counter(y[idx].tolist())
    assert per_class == {0: 50, 1: 50}
    healthy = Counter(i for i in idx.tolist() if y[i] == 0)
    assert max(healthy.values()) - min(healthy.values()) <= 1  # tiled within the class
    assert Counter(y[idx[:50]].tolist())[1] not in (0, 50)  # the classes are shuffled together


def test_balanced_sampling_of_an_odd_length_stays_within_one_of_even():
    y = torch.tensor([0] * 5 + [1] * 3)
    per_class = Counter(y[labeled_indices(y, 51, _gen(), "balanced")].tolist())
    assert sorted(per_class.values()) == [25, 26]


def test_an_unknown_labeled_sampling_is_refused():
    with pytest.raises(ValueError, match="unknown labeled_sampling 'weighted'"):
        TrainConfig(labeled_sampling="weighted")


@pytest.mark.parametrize(("module", "method"), [(ssl_gan, None), (supervised, "convnet")])
def test_both_trainers_draw_labeled_batches_as_configured(monkeypatch, module, method):
    seen = []
    real = labeled_indices

    def spy(y, needed, gen, sampling):
        seen.append(sampling)
        return real(y, needed, gen, sampling)

    monkeypatch.setattr(module, "labeled_indices", spy)
    model_cfg, cfg = preset("tiny", epochs=2, labeled_sampling="balanced")
    data = toy_train_data(n_train=4, n_val=2, seed=1, labeled_images=2)
    kw = {"method": method} if method else {}
    module.train(data, cfg, device="cpu", model_cfg=model_cfg, **kw)
    assert seen == ["balanced", "balanced"]  # one epoch order each
