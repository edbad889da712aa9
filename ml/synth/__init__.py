"""Synthetic fundus photographs with IDRiD-style lesion masks, for tests, the demo and CI."""

from ml.synth.dataset import write_dataset
from ml.synth.fundus import LESION_TYPES, MASK_TYPES, generate

__all__ = ["LESION_TYPES", "MASK_TYPES", "generate", "write_dataset"]
