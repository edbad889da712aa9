"""The SSL-GAN losses (Salimans et al. 2016, K real classes + one fake class).

With the fake class's logit fixed at 0, D(x) = Z / (Z + 1) where Z = sum_k exp(l_k), i.e.
log D(x) = lse - softplus(lse) and log(1 - D(x)) = -softplus(lse) with lse = logsumexp(l).
Writing the losses this way never forms Z itself, so large logits cannot overflow.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def supervised_loss(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Cross entropy over the K real classes on labeled patches."""
    return F.cross_entropy(logits, labels)


def unsupervised_loss(logits_real: torch.Tensor, logits_fake: torch.Tensor) -> torch.Tensor:
    """-0.5 E[log D(x)] - 0.5 E[log(1 - D(G(z)))], the discriminator's real-vs-fake term."""
    lse_real = torch.logsumexp(logits_real, dim=1)
    lse_fake = torch.logsumexp(logits_fake, dim=1)
    return 0.5 * (F.softplus(lse_real) - lse_real).mean() + 0.5 * F.softplus(lse_fake).mean()


def feature_matching_loss(features_real: torch.Tensor, features_fake: torch.Tensor) -> torch.Tensor:
    """L1 between the batch means of D's post-NiN activations on real and generated patches.

    Any shape (B, ...): pooled features (B, C) or the per-position map (B, C, h, w), whose batch
    mean keeps one target per channel and position."""
    return (features_real.mean(dim=0) - features_fake.mean(dim=0)).abs().mean()
