"""The schema comes only from the migrations: they must agree with the models, and go both ways."""

from __future__ import annotations

import json

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import inspect, text

from app.db import migrate
from app.db.base import Base
from tests.app.conftest import private_engine

TABLES = {
    "users",
    "api_tokens",
    "images",
    "patch_labels",
    "model_versions",
    "active_model",
    "training_jobs",
    "predictions",
    "suggestions",
}


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def empty_engine(request, tmp_path):
    with private_engine(request, tmp_path / "m.sqlite3", "ps_mig", migrated=False) as engine:
        yield engine


def test_upgrade_from_empty_to_head_and_back_to_base(empty_engine):
    assert migrate.is_empty(empty_engine)
    migrate.upgrade(empty_engine)
    assert migrate.current_revision(empty_engine) == migrate.head_revision()
    assert set(inspect(empty_engine).get_table_names()) >= TABLES
    with empty_engine.connect() as conn:  # the single active_model row exists, pointing nowhere
        assert conn.execute(text("select id, model_version_id from active_model")).all() == [(1, None)]
    migrate.downgrade(empty_engine, "base")
    assert migrate.current_revision(empty_engine) is None
    assert migrate.is_empty(empty_engine)
    migrate.upgrade(empty_engine)  # and up again: downgrade left nothing behind that blocks it
    assert migrate.current_revision(empty_engine) == migrate.head_revision()


def test_models_and_migrations_agree(empty_engine):
    migrate.upgrade(empty_engine)
    with empty_engine.connect() as conn:
        ctx = MigrationContext.configure(conn, opts={"compare_type": True, "compare_server_default": True})
        diff = compare_metadata(ctx, Base.metadata)
    assert diff == [], f"models and migrations differ; write a migration: {diff}"


def test_upgrade_if_needed_only_touches_an_empty_database(empty_engine):
    assert migrate.upgrade_if_needed(empty_engine) is True
    assert migrate.upgrade_if_needed(empty_engine) is False
    assert migrate.current_revision(empty_engine) == migrate.head_revision()


def test_0003_fills_network_config_from_existing_checkpoints(empty_engine, tiny_checkpoint):
    """Versions registered before 0003 get their network configuration from their checkpoint; an
    unreadable checkpoint leaves it unknown instead of failing the upgrade."""
    migrate.upgrade(empty_engine, "0002")
    row = (
        "insert into model_versions (id, version, method, preset, checkpoint, checkpoint_sha256, "
        "checkpoint_size, threshold, metrics, training_summary, created_at) values "
        "(:id, :id, 'ssl_gan', 'tiny', :ck, 'x', 1, 1.0, '{}', '{}', '2026-11-27 00:00:00')"
    )
    with empty_engine.begin() as conn:
        conn.execute(text(row), {"id": 1, "ck": tiny_checkpoint})
        conn.execute(text(row), {"id": 2, "ck": b"not a checkpoint"})
    migrate.upgrade(empty_engine)
    with empty_engine.connect() as conn:
        got = dict(conn.execute(text("select id, network_config from model_versions order by id")).all())
    config = got[1] if isinstance(got[1], dict) else json.loads(got[1])
    assert config["input_norm"] == "image" and config["model_res"] == 32
    assert got[2] is None
