"""Easy synthetic patch data and a tiny trained checkpoint, for tests of code that needs a model.

Not the synthetic fundus generator (that is ml.synth, with lesion masks, used by the benchmark):
these are bare 32x32 patches where "diseased" means a few bright yellow spots on the orange
background, so any working learner separates them within a few dozen iterations.
"""

from __future__ import annotations

import numpy as np

from ml.train.loop import TrainData


def toy_patches(
    n_images: int, seed: int = 0, diseased_fraction: float = 0.3, res: int = 32, n_patches: int = 64
) -> tuple[np.ndarray, np.ndarray]:
    """(patches uint8 (N, 64, 3, res, res), labels int8 (N, 64)); even-indexed images are healthy."""
    rng = np.random.default_rng(seed)
    base = np.array([0.75, 0.35, 0.15], dtype=np.float32)[None, None, :, None, None]
    x = base * rng.uniform(0.7, 1.0, size=(n_images, n_patches, 1, 1, 1)).astype(np.float32)
    x = x + rng.normal(0, 0.04, size=(n_images, n_patches, 3, res, res)).astype(np.float32)
    labels = np.zeros((n_images, n_patches), dtype=np.int8)
    yy, xx = np.mgrid[:res, :res]
    for i in range(1, n_images, 2):
        for k in np.flatnonzero(rng.random(n_patches) < diseased_fraction):
            labels[i, k] = 1
            for _ in range(rng.integers(2, 5)):
                cy, cx, r = rng.integers(4, res - 4), rng.integers(4, res - 4), rng.uniform(1.5, 3.5)
                spot = ((yy - cy) ** 2 + (xx - cx) ** 2) <= r * r
                x[i, k, 0][spot], x[i, k, 1][spot], x[i, k, 2][spot] = 1.0, 0.95, 0.3
    return np.rint(np.clip(x, 0, 1) * 255).astype(np.uint8), labels


def toy_train_data(
    n_train: int = 8, n_val: int = 6, seed: int = 0, labeled_images: int | None = None
) -> TrainData:
    """Toy TrainData; only the first ``labeled_images`` training images keep their labels."""
    x, y = toy_patches(n_train + n_val, seed)
    labels = y[:n_train].copy()
    if labeled_images is not None:
        labels[labeled_images:] = -1
    return TrainData(
        patches=x[:n_train],
        patch_labels=labels,
        image_ids=[f"toy-{i}" for i in range(n_train)],
        val_patches=x[n_train:],
        val_patch_labels=y[n_train:],
        val_image_labels=(y[n_train:] == 1).any(1).astype(np.int8),
    )


def tiny_checkpoint(seed: int = 0) -> bytes:
    """A trained ``tiny``-preset SSL-GAN checkpoint (a few seconds on a CPU) for other tests."""
    from ml.checkpoint import save
    from ml.train.config import preset
    from ml.train.ssl_gan import train

    model_cfg, cfg = preset("tiny", seed=seed)
    return save(train(toy_train_data(seed=seed), cfg, device="cpu", model_cfg=model_cfg))
