"""The ``patchscreen`` command line.

Each concern registers its own sub-commands from a module of this package, so the data, method,
server and worker commands live next to the code they drive. ml/ stays free of Typer: these
modules are thin wrappers around plain ml/ functions.
"""

from __future__ import annotations

import typer

from app.cli import bench, data, server, worker

cli = typer.Typer(
    name="patchscreen",
    help="PatchScreen: diabetic-retinopathy screening from a few labeled patches.",
    no_args_is_help=True,
    add_completion=False,
)


@cli.callback()
def _root() -> None:
    """PatchScreen: diabetic-retinopathy screening from a few labeled patches."""


bench_cli = typer.Typer(
    help="Benchmarks that print their figures (see docs/benchmarks.md).", no_args_is_help=True
)
cli.add_typer(bench_cli, name="bench")

for module in (data, bench, server, worker):
    module.register(cli, bench_cli)


@cli.command()
def version() -> None:
    """Print the installed PatchScreen version."""
    from importlib.metadata import version as dist_version

    typer.echo(dist_version("patchscreen"))


def main() -> None:
    cli()
