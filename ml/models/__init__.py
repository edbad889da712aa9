"""Networks of the method (discriminator, generator) and the ResNet34 baseline."""

from __future__ import annotations

from torch import nn

from ml.train.config import ModelConfig

METHODS = ("ssl-gan", "convnet", "resnet34")


def build_classifier(method: str, cfg: ModelConfig) -> nn.Module:
    """The patch classifier a method predicts with (the discriminator for ssl-gan and convnet)."""
    from ml.models.discriminator import Discriminator
    from ml.models.resnet import ResNet34

    if method in ("ssl-gan", "convnet"):
        return Discriminator(cfg)
    if method == "resnet34":
        return ResNet34(cfg.resnet_width)
    raise ValueError(f"unknown method {method!r}; choose one of {', '.join(METHODS)}")
