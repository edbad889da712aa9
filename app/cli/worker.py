"""``patchscreen worker``, ``patchscreen train`` and ``patchscreen demo``.

``worker`` starts a Celery worker (production, REDIS_URL set) or the embedded local worker
(``--local``, or automatically when REDIS_URL is unset); either way it logs the device it trains on.
"""

from __future__ import annotations

import logging
from pathlib import Path

import typer

log = logging.getLogger("patchscreen.worker")


def register(cli: typer.Typer, bench: typer.Typer) -> None:
    """Attach this module's commands to the root command and to the bench group."""
    cli.command("worker")(worker)
    cli.command("train")(train)
    cli.command("demo")(demo)
    bench.command("paper-fanout")(bench_paper_fanout)
    bench.command("training-job")(bench_training_job)


def worker(
    queues: str = typer.Option(
        "celery",
        "--queues",
        "-Q",
        help="Comma-separated queues to consume: `gpu` on GPU hosts, `celery` (default).",
    ),
    concurrency: int = typer.Option(1, help="Jobs at once; one per GPU is right for training."),
    pool: str = typer.Option(
        "solo", help="Celery pool: solo runs the job in the worker process (CUDA-safe)."
    ),
    local: bool = typer.Option(False, "--local", help="Embedded worker polling the database (no Redis)."),
    loglevel: str = typer.Option("INFO", help="Log level."),
) -> None:
    """Start a training worker (Celery on REDIS_URL, or the embedded local worker)."""
    from app.core.config import get_settings
    from app.core.scheduling import keep_freed_memory

    # Before any thread exists: CPU training frees and re-allocates its activations every
    # iteration, and glibc's defaults made the kernel hand them back as fresh pages each time.
    kept = keep_freed_memory()
    logging.basicConfig(level=loglevel.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    log.info("freed memory kept for reuse: %s", "yes" if kept else "no (not glibc)")
    settings = get_settings()
    if local or not settings.redis_url:
        if not local:
            log.info("REDIS_URL is not set: starting the embedded local worker")
        from app.worker.local import main

        main(settings)
        return
    from app.worker.runner import start_celery_worker

    start_celery_worker(
        [q.strip() for q in queues.split(",") if q.strip()],
        concurrency=concurrency,
        pool=pool,
        loglevel=loglevel,
        settings=settings,
    )


def train(
    method: str = typer.Option("ssl_gan", help="ssl_gan, convnet or resnet34."),
    preset: str = typer.Option("small", help="tiny, small (CPU) or full (GPU)."),
    epochs: int | None = typer.Option(None, help="Override the preset's epochs."),
    seed: int | None = typer.Option(None),
    queue: bool = typer.Option(False, help="Queue behind a running job instead of refusing."),
    if_none: bool = typer.Option(False, "--if-none", help="Do nothing when a model or a job already exists."),
) -> None:
    """Queue a training job (the same as POST /api/v1/training-jobs); a worker runs it."""
    from sqlalchemy import func, select

    from app.core.config import get_settings
    from app.db.models import TrainingJob
    from app.services import training
    from app.worker.tasks import session_factory

    settings = get_settings()
    with session_factory()() as session:
        if if_none and session.scalar(select(func.count()).select_from(TrainingJob)):
            typer.echo("a training job already exists; not queuing another")
            return
        try:
            job = training.create_job(
                session,
                training.JobRequest(method, preset, epochs, seed),
                user_id=None,
                queue=queue,
                trigger="cli",
                settings=settings,
            )
        except training.TrainingError as exc:
            typer.echo(f"error: {exc.message}", err=True)
            raise typer.Exit(1) from exc
    typer.echo(f"queued training job {job.id} ({method}, preset {preset})")


def demo(
    source: Path | None = typer.Option(
        None, help="Seed from a real IDRiD folder instead of synthetic images."
    ),
    n_images: int = typer.Option(36, help="How many images to import."),
    labeled_images: int = typer.Option(12, help="How many of them get patch labels."),
    if_empty: bool = typer.Option(
        False, "--if-empty", help="Do nothing when the database already has images."
    ),
    seed: int = typer.Option(0),
) -> None:
    """Seed a demo: fundus images, some patches labeled, an admin whose password is printed once."""
    from app.worker.demo import seed_demo

    seed_demo(
        source=source,
        n_images=n_images,
        labeled_images=labeled_images,
        if_empty=if_empty,
        seed=seed,
        echo=typer.echo,
    )


def bench_paper_fanout(
    out: Path = typer.Option(Path("test-output/paper-fanout.json"), help="Where to write the gathered rows."),
    timeout_s: float = typer.Option(24 * 3600, help="Give up waiting after this long."),
    extra: list[str] = typer.Argument(
        None, help="Arguments passed to ml.bench.paper (e.g. --labeled 10 20)."
    ),
) -> None:
    """Fan the paper-protocol cells out as Celery tasks over all workers and gather the table."""
    from app.worker.bench import fan_out

    fan_out(list(extra or []), out=out, timeout_s=timeout_s, echo=typer.echo)


def bench_training_job(
    preset: str = typer.Option("small", help="Preset to train (small: the CPU default)."),
    n_images: int = typer.Option(36, help="Demo images to seed."),
    labeled_images: int = typer.Option(12, help="Images with patch labels."),
    allocator: str = typer.Option(
        "kept", help="kept: freed memory kept for reuse, as the worker sets it; glibc: the defaults."
    ),
) -> None:
    """The embedded path end to end on a fresh demo: seed, queue, train, register, activate."""
    import tempfile
    import time

    from app.core.config import Settings
    from app.core.scheduling import keep_freed_memory
    from app.db.models import TrainingJob
    from app.services import training
    from app.worker import local
    from app.worker.demo import seed_demo
    from app.worker.tasks import session_factory

    if allocator not in ("kept", "glibc"):
        raise typer.BadParameter("use kept or glibc", param_hint="--allocator")
    if allocator == "kept":
        keep_freed_memory()

    with tempfile.TemporaryDirectory() as tmp:
        settings = Settings(data_dir=Path(tmp), redis_url=None, database_url=None)
        t0 = time.perf_counter()
        seed_demo(n_images=n_images, labeled_images=labeled_images, settings=settings, echo=lambda _: None)
        t_seed = time.perf_counter() - t0
        factory = session_factory(settings.resolved_database_url)
        with factory() as session:
            job = training.create_job(
                session, training.JobRequest(preset=preset), user_id=None, settings=settings
            )
        threads = local.limit_cpu_threads()
        t1 = time.perf_counter()
        status = local.run_once(factory, settings)
        t_job = time.perf_counter() - t1
        with factory() as session:
            job = session.get(TrainingJob, job.id)
            p = job.progress or {}
        typer.echo(f"seed {n_images} images ({labeled_images} labeled): {t_seed:.1f} s")
        typer.echo(
            f"job {status}: preset {preset}, {p.get('iterations')} iterations in {t_job:.1f} s "
            f"({p.get('it_per_s', 0):.2f} it/s, {threads} torch threads, allocator {allocator}), "
            "validation patch AUC "
            f"{p.get('val_patch_auc')}; {p.get('message')}"
        )
