"""Fixtures for the web service tests, on SQLite and on the real PostgreSQL.

Each backend gets a schema made by the Alembic migrations once per session; each test then runs
inside one outer transaction on one connection that is rolled back afterwards (services' commits
become savepoints), so tests are independent and leave nothing behind. Tests that need real
concurrency (several connections) use ``fresh_app`` instead, a whole app on its own SQLite file.
"""

from __future__ import annotations

import io
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import numpy as np
import pytest
from fastapi.testclient import TestClient
from PIL import Image
from sqlalchemy import Connection, Engine, text
from sqlalchemy.orm import Session

from app.core import security
from app.core.config import Settings
from app.db import migrate
from app.db.models import User
from app.db.session import make_engine
from app.main import create_app
from app.services import users

PASSWORD = "correct horse battery"
_PASSWORD_HASH = security.hash_password(PASSWORD)  # argon2 is slow on purpose: hash once per session


@contextmanager
def private_engine(request, sqlite_path, prefix: str, *, migrated: bool = True) -> Iterator[Engine]:
    """An engine on a database of its own: a SQLite file, or a private schema in the real
    PostgreSQL (dropped afterwards), so tests never see or clobber anyone else's tables."""
    schema = admin = None
    if request.param == "sqlite":
        engine = make_engine(f"sqlite:///{sqlite_path}")
    else:
        url = request.getfixturevalue("postgres_url")
        schema = f"{prefix}_{uuid.uuid4().hex[:8]}"
        admin = make_engine(url)
        with admin.begin() as conn:
            conn.execute(text(f'CREATE SCHEMA "{schema}"'))
        engine = make_engine(url, connect_args={"options": f"-csearch_path={schema}"})
    try:
        if migrated:
            migrate.upgrade(engine)
        yield engine
    finally:
        engine.dispose()
        if admin is not None:
            with admin.begin() as conn:
                conn.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
            admin.dispose()


@pytest.fixture(scope="session", params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def db_engine(request, tmp_path_factory) -> Iterator[Engine]:
    """A migrated database per backend (PostgreSQL: a private schema in the test database)."""
    with private_engine(request, tmp_path_factory.mktemp("db") / "test.sqlite3", "ps_app") as engine:
        yield engine


@pytest.fixture
def db_connection(db_engine: Engine) -> Iterator[Connection]:
    conn = db_engine.connect()
    outer = conn.begin()
    try:
        yield conn
    finally:
        outer.rollback()
        conn.close()


@pytest.fixture
def db(db_connection: Connection) -> Iterator[Session]:
    """A session inside the test's transaction (for arranging data and checking the database)."""
    with Session(bind=db_connection, join_transaction_mode="create_savepoint", expire_on_commit=False) as s:
        yield s


@pytest.fixture
def settings(tmp_path) -> Settings:
    return Settings(env="test", data_dir=tmp_path / "data", min_image_side=256)


@pytest.fixture
def app(settings: Settings, db_engine: Engine, db_connection: Connection):
    application = create_app(settings, engine=db_engine)

    def factory(write: bool = False) -> Session:
        return Session(bind=db_connection, join_transaction_mode="create_savepoint", expire_on_commit=False)

    application.state.session_factory = factory
    return application


@pytest.fixture
def client(app) -> Iterator[TestClient]:
    with TestClient(app) as c:
        yield c


@dataclass
class Account:
    user: User
    token: str

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"}


@pytest.fixture
def make_account(db: Session):
    """make_account(role, name=None) -> Account with a live API token (no argon2 cost per test)."""
    counter = iter(range(10_000))

    def make(role: str, name: str | None = None) -> Account:
        user = User(
            username=name or f"{role}{next(counter)}", password_hash=_PASSWORD_HASH, role=role, is_active=True
        )
        db.add(user)
        db.flush()
        issued = users.issue_token(db, user, "api", name="test")
        db.commit()
        return Account(user, issued.token)

    return make


@pytest.fixture
def admin(make_account) -> Account:
    return make_account("admin", "root")


@pytest.fixture
def annotator(make_account) -> Account:
    return make_account("annotator", "anna")


@pytest.fixture
def viewer(make_account) -> Account:
    return make_account("viewer", "vic")


def fundus_bytes(seed: int = 0, size: int = 512, fmt: str = "JPEG", dr: bool = True, **save) -> bytes:
    """A small synthetic fundus photograph (ml.synth) encoded in ``fmt``."""
    from ml.synth import generate

    rgb, _ = generate(seed, size=size, dr=dr)
    buf = io.BytesIO()
    Image.fromarray(np.asarray(rgb)).save(buf, format=fmt, **save)
    return buf.getvalue()


@pytest.fixture(scope="session")
def jpeg_bytes() -> bytes:
    return fundus_bytes(1)


def upload(client: TestClient, account: Account, data: bytes, name: str = "eye.jpg", **kw):
    return client.post(
        "/api/v1/images", files={"files": (name, data, "image/jpeg")}, headers=account.headers, **kw
    )


@pytest.fixture(scope="session")
def tiny_checkpoint() -> bytes:
    """A really trained (tiny preset, toy data) checkpoint: a few seconds, once per session."""
    from ml.train.toy import tiny_checkpoint as make

    return make(seed=0)


@pytest.fixture
def active_model(db: Session, tiny_checkpoint: bytes, admin: Account):
    """Version 1 registered from the tiny checkpoint and activated."""
    from app.services import models

    mv = models.register_model_version(
        db,
        tiny_checkpoint,
        method="ssl_gan",
        preset="tiny",
        metrics={"patch_auc": 0.9},
        training_summary={"labeled_patches": 10},
        created_by=admin.user,
    )
    models.activate(db, mv.version, admin.user)
    return mv


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def fresh_engine(request, tmp_path) -> Iterator[Engine]:
    """A migrated database of its own (file SQLite / private PostgreSQL schema) for tests that need
    several connections at once, which the rolled-back single-connection fixture cannot give."""
    with private_engine(request, tmp_path / "fresh.sqlite3", "ps_fresh") as engine:
        yield engine
