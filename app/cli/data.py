"""Data commands: ``synth``, ``import-idrid``, ``dataset summary`` and ``bench pipeline``.

Thin wrappers: the work is done by ml.synth, ml.data and ml.bench.pipeline, which run without the
app. Errors a user can fix (wrong folder, non-empty output folder) exit with status 2 and one
sentence on stderr; per-file problems of an import are listed and the import goes on.
"""

from __future__ import annotations

import json
from pathlib import Path

import typer

DEFAULT_SHARED = Path("../shared/data/idrid")


def _fail(message: str) -> None:
    typer.echo(f"error: {message}", err=True)
    raise typer.Exit(2)


def _load(source: Path):
    from ml.data.cohort import load_source

    try:
        return load_source(source)
    except (FileNotFoundError, ValueError) as exc:
        _fail(str(exc))


def _print_problems(problems: list[dict[str, str]], limit: int = 50) -> None:
    if not problems:
        return
    typer.echo(f"skipped or ignored {len(problems)} file(s):")
    for p in problems[:limit]:
        typer.echo(f"  {p['file']}: {p['reason']}")
    if len(problems) > limit:
        typer.echo(f"  ... and {len(problems) - limit} more (use --json for all)")


def synth(
    out: Path = typer.Option(..., "--out", help="Folder to create (must be empty or absent)."),
    n_healthy: int = typer.Option(168, "--n-healthy", min=0, help="Grade-0 images (grading set)."),
    n_dr: int = typer.Option(81, "--n-dr", min=0, help="DR images with lesion masks (segmentation set)."),
    seed: int = typer.Option(0, "--seed", help="Same seed, same images."),
    size: int = typer.Option(1024, "--size", min=32, help="Image side in pixels."),
    workers: int = typer.Option(2, "--workers", min=1, help="Processes used to generate."),
) -> None:
    """Write a synthetic IDRiD-like cohort in the official IDRiD folder layout."""
    from ml.synth import write_dataset

    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        _fail(f"{out} exists and is not an empty folder; choose a new --out")
    summary = write_dataset(out, n_healthy, n_dr, seed, size=size, workers=workers)
    typer.echo(
        f"wrote {n_healthy} healthy and {n_dr} DR synthetic images ({size}x{size}, seed {seed}) "
        f"in the IDRiD layout under {out}"
    )
    typer.echo(
        f"({summary['n_grading_repeats_of_dr']} DR photographs repeated in the grading set with grades 2-4)"
    )


def import_idrid(
    path: Path = typer.Argument(
        ..., help="Official IDRiD download, synthetic folder or ../shared/data/idrid."
    ),
    cache_dir: Path | None = typer.Option(
        None, "--cache-dir", help="Patch cache (default: PATCHSCREEN_DATA_DIR/cache/patches)."
    ),
    workers: int = typer.Option(2, "--workers", min=1, help="Processes for preprocessing."),
    as_json: bool = typer.Option(False, "--json", help="Print one JSON object."),
) -> None:
    """Read an IDRiD cohort, preprocess it into the patch cache and report what was skipped."""
    from ml.data.cache import load_arrays

    if cache_dir is None:
        from app.core.config import get_settings

        cache_dir = get_settings().data_dir / "cache" / "patches"
    cohort = _load(path)
    arrays = load_arrays(cohort, cache_dir=cache_dir, workers=workers)
    result = {
        "source": {"kind": cohort.source, "root": str(cohort.root)},
        "images": {
            "healthy": int((arrays.image_labels == 0).sum()),
            "dr": int((arrays.image_labels == 1).sum()),
        },
        "patches": {
            "healthy": int((arrays.patch_labels == 0).sum()),
            "diseased": int((arrays.patch_labels == 1).sum()),
        },
        "cache": {"dir": str(cache_dir), "computed": arrays.computed, "reused": arrays.cache_hits},
        "skipped": [p.to_dict() for p in arrays.skipped],
    }
    if as_json:
        typer.echo(json.dumps(result))
    else:
        typer.echo(
            f"imported {len(arrays)} images from {cohort.root} ({cohort.source}): "
            f"{result['images']['healthy']} healthy, {result['images']['dr']} DR; "
            f"{result['patches']['diseased']} diseased and {result['patches']['healthy']} healthy patches"
        )
        typer.echo(f"patch cache {cache_dir}: {arrays.computed} computed, {arrays.cache_hits} reused")
        _print_problems(result["skipped"])
    if len(arrays) == 0:
        raise typer.Exit(1)


def summary(
    source: Path = typer.Argument(
        DEFAULT_SHARED, help="Official IDRiD download, synthetic folder or prepared data."
    ),
    as_json: bool = typer.Option(False, "--json", help="Print one JSON object."),
    min_pixels: int = typer.Option(
        1, "--min-pixels", min=1, help="Lesion pixels that make a patch diseased."
    ),
    min_fraction: float | None = typer.Option(
        None,
        "--min-fraction",
        min=0.0,
        max=1.0,
        help="Instead of --min-pixels: lesion fraction of the patch.",
    ),
) -> None:
    """Image and patch counts of the method's cohort in SOURCE (auto-detected)."""
    from ml.data.summary import summarize

    cohort = _load(source)
    try:
        result = summarize(cohort, min_pixels=min_pixels, min_fraction=min_fraction)
    except ValueError as exc:
        _fail(str(exc))
    if as_json:
        typer.echo(json.dumps(result))
        return
    images, patches = result["images"], result["patches"]
    typer.echo(f"source   {cohort.root} ({cohort.source})")
    typer.echo(f"images   {images['healthy']} healthy, {images['dr']} DR")
    typer.echo(f"patches  {patches['healthy']} healthy, {patches['diseased']} diseased")
    typer.echo(f"lesion fraction of diseased patches: {result['lesion_fraction_of_diseased_patches']}")
    _print_problems(result["skipped"])


def bench_pipeline(
    source: Path = typer.Option(DEFAULT_SHARED, "--source", help="Cohort to preprocess."),
    workers: int = typer.Option(2, "--workers", min=1, help="Processes for cold preprocessing."),
    as_json: bool = typer.Option(False, "--json", help="Print one JSON object."),
) -> None:
    """Images/s through the pipeline, cold and cached, and peak memory (docs/benchmarks.md)."""
    from ml.bench import pipeline

    _load(source)  # a clear error for a wrong folder before any timing
    result = pipeline.run(source, workers=workers)
    typer.echo(json.dumps(result) if as_json else pipeline.format_report(result))


def register(cli: typer.Typer, bench: typer.Typer) -> None:
    """Attach this module's commands to the root command and to the bench group."""
    cli.command("synth")(synth)
    cli.command("import-idrid")(import_idrid)
    dataset = typer.Typer(help="Inspect a data set.", no_args_is_help=True)
    dataset.command("summary")(summary)
    cli.add_typer(dataset, name="dataset")
    bench.command("pipeline")(bench_pipeline)
