"""Sub-commands for this concern (filled in by its issue)."""

from __future__ import annotations

import typer


def register(cli: typer.Typer, bench: typer.Typer) -> None:
    """Attach this module's commands to the root command and to the bench group."""
