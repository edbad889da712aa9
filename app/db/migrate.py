"""Schema management through Alembic only (the app never calls ``metadata.create_all``)."""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Engine, inspect

ROOT = Path(__file__).resolve().parents[2]


def alembic_config(url: str | None = None, connection=None) -> Config:
    cfg = Config(str(ROOT / "alembic.ini"))
    cfg.set_main_option("script_location", str(ROOT / "migrations"))
    if url:
        cfg.attributes["url"] = url
    if connection is not None:
        cfg.attributes["connection"] = connection
    return cfg


def upgrade(engine: Engine, revision: str = "head") -> None:
    with engine.begin() as conn:
        command.upgrade(alembic_config(connection=conn), revision)


def downgrade(engine: Engine, revision: str) -> None:
    with engine.begin() as conn:
        command.downgrade(alembic_config(connection=conn), revision)


def current_revision(engine: Engine) -> str | None:
    with engine.connect() as conn:
        return MigrationContext.configure(conn).get_current_revision()


def head_revision() -> str:
    head = ScriptDirectory.from_config(alembic_config()).get_current_head()
    assert head is not None
    return head


def is_empty(engine: Engine) -> bool:
    """True when none of PatchScreen's tables exist (an Alembic bookkeeping table alone is empty)."""
    return not (set(inspect(engine).get_table_names()) - {"alembic_version"})


def upgrade_if_needed(engine: Engine) -> bool:
    """At start-up: create the schema on an empty database; returns True when it migrated.

    A database that already has tables but lags behind is left alone (migrating a production
    database is an explicit `patchscreen db upgrade`); the caller reports the mismatch.
    """
    if is_empty(engine):
        upgrade(engine)
        return True
    return False
