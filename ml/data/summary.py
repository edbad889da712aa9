"""What a cohort holds, at image and patch level, computed from the masks alone (no image decoding)."""

from __future__ import annotations

import numpy as np

from ml.data.cache import lesion_union
from ml.data.cohort import Cohort, Problem
from ml.data.labels import fraction_report, labels_from_counts, lesion_counts
from ml.data.patches import PatchParams


def summarize(
    cohort: Cohort,
    params: PatchParams | None = None,
    min_pixels: int = 1,
    min_fraction: float | None = None,
) -> dict[str, object]:
    """The ``dataset summary`` object: image and patch counts of the cohort, and what was skipped.

    Healthy images contribute only healthy patches; DR images contribute their patches labeled
    by the mask rule. A mask that cannot be decoded is reported and its image left out.
    """
    params = params or PatchParams()
    skipped = list(cohort.skipped)
    healthy_images = dr_images = diseased = healthy_patches = 0
    fractions = []
    for sample in cohort.samples:
        if not sample.is_dr:
            healthy_images += 1
            healthy_patches += params.n_patches
            continue
        try:
            counts = lesion_counts(lesion_union(sample, params.size), params)
        except (OSError, ValueError) as exc:
            skipped.append(Problem(str(sample.image), f"cannot read its masks ({exc}): skipped"))
            continue
        dr_images += 1
        labels = labels_from_counts(counts, params, min_pixels, min_fraction)
        diseased += int(labels.sum())
        healthy_patches += int(labels.size - labels.sum())
        fractions.append(counts / float(params.patch**2))
    return {
        "images": {"healthy": healthy_images, "dr": dr_images},
        "patches": {"healthy": healthy_patches, "diseased": diseased},
        "skipped": [p.to_dict() for p in skipped],
        "source": {"kind": cohort.source, "root": str(cohort.root)},
        "lesion_fraction_of_diseased_patches": fraction_report(fractions or [np.zeros(0)]),
    }
