"""Evaluation of the method: patch and image AUC, the aggregation, the threshold rule, localization.

The image-level score is the sum over the 64 patches of sigmoid(patch logit): the expected number
of diseased patches, so it grows with lesion extent rather than saturating on one patch.
"""

from __future__ import annotations

import math

import numpy as np
from scipy.special import expit
from sklearn.metrics import roc_auc_score, roc_curve


def sigmoid(logits: np.ndarray) -> np.ndarray:
    """Patch probabilities in float64; exact 0 and 1 for the huge logits that an overconfident
    model gives (1 / (1 + exp(-x)) overflows there and warns)."""
    return expit(np.asarray(logits, dtype=np.float64))


def image_scores(patch_logits: np.ndarray) -> np.ndarray:
    """(B, 64) logits -> (B,) scores = sum of sigmoid over the patches."""
    return sigmoid(patch_logits).sum(axis=-1)


def auc(y_true: np.ndarray, score: np.ndarray) -> float:
    """ROC AUC, or NaN when only one class is present (so a table shows the gap honestly)."""
    y = np.asarray(y_true).ravel()
    s = np.asarray(score, dtype=np.float64).ravel()
    if y.size == 0 or np.unique(y).size < 2:
        return math.nan
    return float(roc_auc_score(y, s))


def patch_auc(patch_logits: np.ndarray, patch_labels: np.ndarray) -> float:
    """AUC over all labeled patches (label >= 0) of the given images."""
    labels = np.asarray(patch_labels).ravel()
    keep = labels >= 0
    return auc(labels[keep], np.asarray(patch_logits).ravel()[keep])


def roc(y_true: np.ndarray, score: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    fpr, tpr, _ = roc_curve(np.asarray(y_true).ravel(), np.asarray(score).ravel())
    return fpr, tpr


def choose_threshold(scores: np.ndarray, labels: np.ndarray, target_sensitivity: float = 0.87) -> float:
    """The highest threshold whose sensitivity (score >= threshold on positives) reaches the target.

    Highest, because among all thresholds meeting the sensitivity target it gives the best
    specificity. With P positives that is the k-th largest positive score, k = ceil(target * P).
    """
    scores = np.asarray(scores, dtype=np.float64).ravel()
    labels = np.asarray(labels).ravel()
    pos = np.sort(scores[labels == 1])[::-1]
    if pos.size == 0:
        raise ValueError("choosing a threshold needs at least one diseased (positive) image")
    if not 0.0 < target_sensitivity <= 1.0:
        raise ValueError(f"target sensitivity must be in (0, 1], got {target_sensitivity}")
    k = math.ceil(target_sensitivity * pos.size - 1e-9)
    return float(pos[max(k, 1) - 1])


def sensitivity_specificity(scores: np.ndarray, labels: np.ndarray, threshold: float) -> tuple[float, float]:
    scores = np.asarray(scores, dtype=np.float64).ravel()
    labels = np.asarray(labels).ravel()
    pred = scores >= threshold
    sens = float(pred[labels == 1].mean()) if (labels == 1).any() else math.nan
    spec = float((~pred[labels == 0]).mean()) if (labels == 0).any() else math.nan
    return sens, spec


def localization_auc(
    heatmaps: np.ndarray, masks: np.ndarray, max_pixels: int = 2_000_000, seed: int = 0
) -> float:
    """Pixel-level AUC of heatmaps (N, H, W) against boolean lesion masks (N, H, W).

    Healthy images count as all-negative pixels. Above ``max_pixels`` a fixed random subsample of
    pixels is used: the AUC estimate's error at millions of pixels is far below the table's digits.
    """
    h = np.asarray(heatmaps, dtype=np.float32).ravel()
    m = np.asarray(masks, dtype=bool).ravel()
    if h.shape != m.shape:
        raise ValueError(f"heatmaps and masks differ in shape: {np.shape(heatmaps)} vs {np.shape(masks)}")
    if h.size > max_pixels:
        idx = np.random.default_rng(seed).choice(h.size, max_pixels, replace=False)
        h, m = h[idx], m[idx]
    return auc(m, h)
