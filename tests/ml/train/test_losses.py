import pytest
import torch

from ml.models.discriminator import patch_logit, prob_real
from ml.train.losses import feature_matching_loss, supervised_loss, unsupervised_loss


def _direct_d(logits: torch.Tensor) -> torch.Tensor:
    z = logits.double().exp().sum(dim=1)
    return z / (z + 1)


def test_prob_real_is_z_over_z_plus_one():
    logits = torch.randn(7, 2) * 3
    torch.testing.assert_close(prob_real(logits).double(), _direct_d(logits), rtol=1e-6, atol=1e-7)
    # Large positive logits -> D near 1; very negative -> near 0 (fake logit 0 dominates).
    assert prob_real(torch.tensor([[20.0, 20.0]])).item() > 0.999999
    assert prob_real(torch.tensor([[-20.0, -20.0]])).item() < 1e-8


def test_unsupervised_loss_matches_formula():
    real, fake = torch.randn(6, 2), torch.randn(5, 2)
    direct = -0.5 * torch.log(_direct_d(real)).mean() - 0.5 * torch.log(1 - _direct_d(fake)).mean()
    torch.testing.assert_close(unsupervised_loss(real, fake).double(), direct, rtol=1e-5, atol=1e-6)


def test_unsupervised_loss_is_finite_for_extreme_logits():
    real = torch.tensor([[-200.0, -300.0], [500.0, 400.0]])
    fake = torch.tensor([[800.0, 0.0], [-900.0, 1.0]])
    loss = unsupervised_loss(real, fake)
    assert torch.isfinite(loss)
    # -log D(real) with lse = -200 is ~200; log(1 + Z) with lse = 800 is ~800: the loss keeps them.
    assert loss.item() > 200


def test_supervised_loss_is_cross_entropy_over_k_classes():
    logits, y = torch.randn(8, 2), torch.randint(0, 2, (8,))
    p = logits.softmax(1)
    direct = -torch.log(p[torch.arange(8), y]).mean()
    torch.testing.assert_close(supervised_loss(logits, y), direct, rtol=1e-5, atol=1e-6)
    assert not torch.allclose(supervised_loss(logits, 1 - y), direct)


def test_feature_matching_is_l1_between_batch_means():
    fr, ff = torch.randn(10, 4), torch.randn(12, 4)
    direct = sum(abs(fr[:, j].mean() - ff[:, j].mean()) for j in range(4)) / 4
    torch.testing.assert_close(feature_matching_loss(fr, ff), direct)
    assert feature_matching_loss(fr, fr.flip(0)).item() < 1e-6


def test_patch_logit_is_diseased_minus_healthy():
    logits = torch.tensor([[1.0, 3.0], [2.0, -1.0]])
    assert patch_logit(logits).tolist() == [2.0, -3.0]
    assert patch_logit(torch.tensor([[0.7]])).item() == pytest.approx(0.7)
    # sigmoid(l1 - l0) is the diseased probability of the softmax over the two real classes.
    torch.testing.assert_close(torch.sigmoid(patch_logit(logits)), logits.softmax(1)[:, 1])


def test_feature_matching_on_maps_keeps_each_position():
    fr, ff = torch.randn(6, 3, 2, 2), torch.randn(5, 3, 2, 2)
    direct = (fr.mean(0) - ff.mean(0)).abs().sum() / 12
    torch.testing.assert_close(feature_matching_loss(fr, ff), direct)
    # a map whose positions are swapped has the same pooled features but not the same means per position
    swapped = ff.flip(-1)
    assert feature_matching_loss(fr, swapped) != feature_matching_loss(fr, ff)
