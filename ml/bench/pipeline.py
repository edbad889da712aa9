"""Benchmark of the data pipeline: images per second cold and warm, and peak memory.

    python -m ml.bench.pipeline --source ../shared/data/idrid --workers 2

Wall time depends on what else runs on the machine; the CPU seconds of the cold pass (this
process plus its workers) do not, and divided by the cores give the best wall time possible.
"Cold" preprocesses every image into an empty cache (decode, resize, normalise, cut, masks);
"warm" reads the same cohort back from that cache, which is what every training run does.
Peak memory is the maximum resident set size of this process and, separately, of the largest
worker process (ru_maxrss), so the cohort's total is at most parent + workers x worker.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import sys
import tempfile
import time
from pathlib import Path

from ml.data.cache import load_arrays
from ml.data.cohort import load_source
from ml.data.patches import PatchParams

TARGET_SECONDS = 60.0
TARGET_PEAK_MIB = 2048.0


def _maxrss_mib(who: int) -> float:
    # Linux reports KiB, macOS bytes.
    scale = 1024 * 1024 if sys.platform == "darwin" else 1024
    return resource.getrusage(who).ru_maxrss / scale


def _cpu_seconds() -> float:
    """User + system CPU time of this process and its reaped children (pool workers)."""
    own, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + kids.ru_utime + kids.ru_stime


def run(source: str | Path, workers: int = 2, cache_dir: str | Path | None = None) -> dict[str, object]:
    """Measure the pipeline on ``source``; a temporary cache is used (and removed) unless given."""
    params = PatchParams()
    with tempfile.TemporaryDirectory(prefix="patchscreen-bench-") as tmp:
        cache = Path(cache_dir) if cache_dir else Path(tmp)
        t0 = time.perf_counter()
        cohort = load_source(source)
        t_read = time.perf_counter() - t0

        t0, c0 = time.perf_counter(), _cpu_seconds()
        cold = load_arrays(cohort, params, cache, workers=workers)
        t_cold, cpu_cold = time.perf_counter() - t0, _cpu_seconds() - c0

        t0 = time.perf_counter()
        warm = load_arrays(cohort, params, cache, workers=workers)
        t_warm = time.perf_counter() - t0

    n = len(cold)
    parent = _maxrss_mib(resource.RUSAGE_SELF)
    child = _maxrss_mib(resource.RUSAGE_CHILDREN)
    total_bound = parent + (workers * child if workers > 1 else 0.0)
    return {
        "source": str(cohort.root),
        "source_kind": cohort.source,
        "images": n,
        "healthy": int((cold.image_labels == 0).sum()),
        "dr": int((cold.image_labels == 1).sum()),
        "skipped": len(cold.skipped),
        "workers": workers,
        "cpus": os.cpu_count(),
        "python": platform.python_version(),
        "read_cohort_s": round(t_read, 3),
        "cold_s": round(t_cold, 2),
        "cold_images_per_s": round(n / t_cold, 2) if t_cold else None,
        "cold_cpu_s": round(cpu_cold, 2),
        "cold_computed": cold.computed,
        "warm_s": round(t_warm, 3),
        "warm_images_per_s": round(n / t_warm, 1) if t_warm else None,
        "warm_cache_hits": warm.cache_hits,
        "peak_rss_parent_mib": round(parent, 1),
        "peak_rss_largest_worker_mib": round(child, 1),
        "peak_rss_total_bound_mib": round(total_bound, 1),
        "target_cold_under_s": TARGET_SECONDS,
        "target_peak_under_mib": TARGET_PEAK_MIB,
        "meets_targets": bool(t_cold < TARGET_SECONDS and total_bound < TARGET_PEAK_MIB),
    }


def write_fullsize_copy(source: str | Path, out: str | Path, size: tuple[int, int] = (4288, 2848)) -> Path:
    """Copy a cohort into the official IDRiD layout at the original 4288x2848 camera size.

    The prepared data are already 1024 px, which skips the costly part of a real download (decoding
    and shrinking 12-megapixel JPEGs); this upscaled copy measures that path on any machine.
    """
    from PIL import Image

    from ml.data import layout

    cohort = load_source(source)
    out = Path(out)
    rows: dict[str, list[str]] = {"train": [], "test": []}
    for sample in cohort.samples:
        split = sample.split if sample.split in layout.SPLITS else "train"
        name = sample.id.rsplit("/", 1)[-1]
        with Image.open(sample.image) as img:
            big = img.convert("RGB").resize(size, Image.Resampling.BICUBIC)
        if sample.is_dr:
            folder = out / layout.SEG_IMAGES / layout.SPLITS[split]
            for kind, path in sample.masks.items():
                mask_dir = out / layout.SEG_MASKS / layout.SPLITS[split] / layout.MASK_FOLDERS[kind]
                mask_dir.mkdir(parents=True, exist_ok=True)
                with Image.open(path) as m:
                    m.convert("L").resize(size, Image.Resampling.NEAREST).save(
                        mask_dir / f"{name}_{kind}.tif", compression="tiff_lzw"
                    )
        else:
            folder = out / layout.GRADING_IMAGES / layout.SPLITS[split]
            rows[split].append(f"{name},0,0")
        folder.mkdir(parents=True, exist_ok=True)
        big.save(folder / f"{name}.jpg", quality=95)
    (out / layout.GRADING_LABELS).mkdir(parents=True, exist_ok=True)
    for split, lines in rows.items():
        text = "Image name,Retinopathy grade,Risk of macular edema \n" + "\n".join(lines) + "\n"
        (out / layout.GRADING_LABELS / layout.GRADING_LABEL_FILES[split]).write_text(text, encoding="utf-8")
    return out


def format_report(r: dict[str, object]) -> str:
    return "\n".join(
        [
            f"source      {r['source']} ({r['source_kind']}): {r['images']} images "
            f"({r['healthy']} healthy, {r['dr']} DR), {r['skipped']} skipped",
            f"cold        {r['cold_s']} s = {r['cold_images_per_s']} images/s "
            f"({r['workers']} worker(s), {r['cpus']} CPUs; target < {r['target_cold_under_s']} s); "
            f"{r['cold_cpu_s']} CPU-s",
            f"warm        {r['warm_s']} s = {r['warm_images_per_s']} images/s (from cache)",
            f"peak memory parent {r['peak_rss_parent_mib']} MiB, "
            f"largest worker {r['peak_rss_largest_worker_mib']} MiB, "
            f"total <= {r['peak_rss_total_bound_mib']} MiB (target < {r['target_peak_under_mib']} MiB)",
            f"targets     {'met' if r['meets_targets'] else 'NOT met'}",
        ]
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m ml.bench.pipeline", description=__doc__.splitlines()[0])
    parser.add_argument(
        "--source", default="../shared/data/idrid", help="IDRiD download, synthetic or prepared folder"
    )
    parser.add_argument(
        "--workers", type=int, default=2, help="processes for cold preprocessing (1 = in-process)"
    )
    parser.add_argument("--cache-dir", default=None, help="cache folder (default: a fresh temporary one)")
    parser.add_argument("--json", action="store_true", help="print one JSON object instead of text")
    parser.add_argument(
        "--make-fullsize",
        metavar="DIR",
        default=None,
        help="first write an official-layout copy of --source upscaled to 4288x2848 into DIR, then bench DIR",
    )
    args = parser.parse_args(argv)
    if args.make_fullsize:
        args.source = str(write_fullsize_copy(args.source, args.make_fullsize))
    result = run(args.source, workers=args.workers, cache_dir=args.cache_dir)
    print(json.dumps(result) if args.json else format_report(result))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
