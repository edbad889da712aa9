"""A preprocessed cohort as one compact ``.npz`` (uint8 patches, labels, packed lesion masks).

The GPU machine that runs the full protocol has torch but not ``../shared``: exporting the
preprocessed cohort (about 30 MB for IDRiD's 249 images) lets a session carry it there and run
``python -m ml.bench.paper --data cohort.npz`` with no image decoding at all.

    python -m ml.bench.cohort_npz --data ../shared/data/idrid --out .cache/idrid-cohort.npz

``--model-res 64`` exports 64x64 patches (4x the bytes); the protocol then builds every network
for that resolution (``ml.bench.paper`` takes it from the file).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from ml.data.cache import CohortArrays
from ml.data.patches import PatchParams

NPZ_VERSION = 1


def save_npz(arrays: CohortArrays, path: str | Path, source: str = "") -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(
        path,
        version=np.array(NPZ_VERSION),
        ids=np.array(arrays.ids),
        patches=arrays.patches,
        patch_labels=arrays.patch_labels,
        image_labels=arrays.image_labels,
        masks_packed=np.packbits(arrays.masks, axis=-1),
        mask_shape=np.array(arrays.masks.shape),
        params=np.array(json.dumps(arrays.params.to_dict())),
        source=np.array(source),
    )
    return path


def load_npz(path: str | Path) -> CohortArrays:
    with np.load(path, allow_pickle=False) as z:
        if int(z["version"]) != NPZ_VERSION:
            raise ValueError(f"{path}: cohort npz version {int(z['version'])}, expected {NPZ_VERSION}")
        shape = tuple(int(s) for s in z["mask_shape"])
        masks = np.unpackbits(z["masks_packed"], axis=-1, count=shape[-1]).astype(bool).reshape(shape)
        patches = z["patches"]
        return CohortArrays(
            ids=[str(i) for i in z["ids"]],
            patches=patches,
            patch_labels=z["patch_labels"],
            image_labels=z["image_labels"],
            masks=masks,
            fractions=np.zeros(patches.shape[:2], np.float32),
            params=PatchParams(**json.loads(str(z["params"]))),
        )


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", required=True, help="cohort folder (IDRiD official, prepared or synthetic)")
    ap.add_argument("--out", required=True, type=Path)
    ap.add_argument("--cache", default=".cache/patches", help="per-image preprocessing cache")
    ap.add_argument(
        "--model-res",
        dest="model_res",
        type=int,
        default=PatchParams().model_res,
        help="side of a patch as the model sees it (32 as published; 64 keeps 2x the detail)",
    )
    args = ap.parse_args(argv)
    from ml.data.cache import load_arrays
    from ml.data.cohort import load_source

    params = PatchParams(model_res=args.model_res)
    arrays = load_arrays(load_source(args.data), params, cache_dir=args.cache)
    path = save_npz(arrays, args.out, source=str(args.data))
    print(json.dumps({"out": str(path), "images": len(arrays), "bytes": path.stat().st_size}))


if __name__ == "__main__":
    main()
