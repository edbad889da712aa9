"""Fixtures for the worker tests: a migrated database with a small labeled image library.

Images carry synthetic patches in the real storage codec: a diseased patch has a bright red blob
on a noisy background, a healthy one does not, so even a few training iterations separate them
better than chance. Labels are written through the labels service (the append-only history).
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import sqlalchemy as sa
from sqlalchemy.orm import Session, sessionmaker

from app.core.config import Settings
from app.db import migrate
from app.db.models import Image, User
from app.db.session import make_engine, make_sessionmaker, write_engine
from app.services import labels as label_service
from app.services import models as registry
from ml.data.patches import patches_to_bytes

ROOT_DIR = Path(__file__).resolve().parents[3]
TINY = {"max_iters_per_epoch": 2, "epochs": 2, "batch_size": 16, "eval_every": 1}


def synthetic_patches(rng: np.random.Generator, diseased: np.ndarray) -> np.ndarray:
    """(64, 3, 32, 32) uint8: noise, plus a red blob on the patches marked diseased."""
    x = rng.normal(90, 20, size=(64, 3, 32, 32))
    yy, xx = np.mgrid[:32, :32]
    blob = np.exp(-((yy - 16) ** 2 + (xx - 16) ** 2) / 40.0)
    x[diseased, 0] += 150 * blob
    x[diseased, 1] -= 40 * blob
    return np.clip(x, 0, 255).astype(np.uint8)


@dataclass
class Library:
    admin: User
    annotator: User
    images: list[int]
    truth: dict[int, np.ndarray]  # image id -> (64,) bool diseased


def add_images(session: Session, n: int, seed: int = 0) -> tuple[list[int], dict[int, np.ndarray]]:
    rng = np.random.default_rng(seed)
    ids, truth = [], {}
    for i in range(n):
        diseased = np.zeros(64, bool)
        if i % 2 == 0:
            diseased[rng.choice(64, size=6, replace=False)] = True
        tag = uuid.uuid4().hex
        img = Image(
            sha256=tag.ljust(64, "0"),
            original_filename=f"img{i}.png",
            format="PNG",
            size_bytes=1,
            width=1024,
            height=1024,
            storage_key=tag,
            patches=patches_to_bytes(synthetic_patches(rng, diseased)),
            patch_params="default",
        )
        session.add(img)
        session.flush()
        ids.append(img.id)
        truth[img.id] = diseased
    session.commit()
    return ids, truth


def label_some(session: Session, lib: Library, image_ids: list[int], per_image: int = 8) -> None:
    """Label every diseased patch and a few healthy ones on each of ``image_ids`` (as the admin)."""
    for image_id in image_ids:
        truth = lib.truth[image_id]
        cells = list(np.flatnonzero(truth)) + list(np.flatnonzero(~truth)[:per_image])
        changes = [(int(k) // 8, int(k) % 8, int(truth[k])) for k in cells]
        label_service.set_labels(session, image_id, changes, lib.admin)


def seed_library(factory: sessionmaker[Session], n_images: int = 6, n_labeled: int = 4) -> Library:
    with factory() as s:
        admin = User(username="admin", password_hash="x", role="admin")
        annotator = User(username="ann", password_hash="x", role="annotator")
        s.add_all([admin, annotator])
        s.commit()
        images, truth = add_images(s, n_images)
        lib = Library(admin, annotator, images, truth)
        label_some(s, lib, images[:n_labeled])
        return lib


@pytest.fixture()
def sqlite_factory(tmp_path) -> Iterator[sessionmaker[Session]]:
    engine = make_engine(f"sqlite:///{tmp_path / 'db.sqlite3'}")
    migrate.upgrade(engine)
    registry.predictors.clear()
    # As the worker does (app/worker/tasks.py): every transaction takes SQLite's write lock when it
    # begins, so a read-then-write unit of work never meets a stale WAL snapshot (SQLITE_BUSY).
    yield make_sessionmaker(write_engine(engine))
    engine.dispose()


@pytest.fixture(scope="session")
def trained_result(tmp_path_factory):
    """One tiny model trained on a throw-away library (reused where a test needs *a* model)."""
    from app.services import training

    engine = make_engine(f"sqlite:///{tmp_path_factory.mktemp('trained') / 'db.sqlite3'}")
    migrate.upgrade(engine)
    factory = make_sessionmaker(engine)
    seed_library(factory)
    with factory() as s:
        data = training.load_job_data(s, training.snapshot_labels(s), seed=0)
    from ml.train.config import preset
    from ml.train.ssl_gan import train

    model_cfg, train_cfg = preset("tiny", **TINY)
    engine.dispose()
    return train(data.train, train_cfg, model_cfg=model_cfg, device="cpu")


@pytest.fixture(scope="session")
def trained_checkpoint(trained_result) -> bytes:
    from ml import checkpoint

    return checkpoint.save(trained_result)


def register_and_activate(factory: sessionmaker[Session], blob: bytes) -> int:
    with factory() as s:
        mv = registry.register_model_version(s, blob, method="ssl_gan", preset="tiny", metrics={})
        registry.activate(s, mv.version)
        return mv.version


@pytest.fixture()
def library(sqlite_factory) -> Library:
    return seed_library(sqlite_factory)


@pytest.fixture()
def settings(tmp_path) -> Settings:
    return Settings(data_dir=tmp_path, redis_url=None, database_url=None, device="cpu")


SCHEMA = "patchscreen_worker_tests"


def reset_postgres(url: str) -> str:
    """A clean, migrated schema of our own inside the test database; returns a URL that uses it.

    Other test modules share the database (CI: ``test``), so these tests never drop anything but
    their own schema; worker subprocesses reach it through the URL's ``search_path`` option.
    """
    engine = make_engine(url)
    with engine.begin() as conn:
        conn.execute(sa.text(f"DROP SCHEMA IF EXISTS {SCHEMA} CASCADE"))
        conn.execute(sa.text(f"CREATE SCHEMA {SCHEMA}"))
    engine.dispose()
    sep = "&" if "?" in url else "?"
    scoped = f"{url}{sep}options=-csearch_path%3D{SCHEMA}"
    engine = make_engine(scoped)
    migrate.upgrade(engine)
    engine.dispose()
    return scoped


@pytest.fixture()
def pg_url(postgres_url) -> str:
    return reset_postgres(postgres_url)


@pytest.fixture()
def pg_factory(pg_url) -> Iterator[sessionmaker[Session]]:
    engine = make_engine(pg_url)
    registry.predictors.clear()
    # As the worker does (app/worker/tasks.py): every transaction takes SQLite's write lock when it
    # begins, so a read-then-write unit of work never meets a stale WAL snapshot (SQLITE_BUSY).
    yield make_sessionmaker(write_engine(engine))
    engine.dispose()
