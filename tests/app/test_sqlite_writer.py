"""SQLite writers of one process queue on a thread lock, released however a transaction ends;
the read-only transactions of a write request (its token, the active model) do not take it."""

from __future__ import annotations

import sqlite3
import threading
import time

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import event, text
from sqlalchemy.orm import Session

from app.core.config import Settings
from app.db.session import begin_read, make_engine, session_scope, write_engine
from app.main import create_app
from app.services import users
from tests.app.conftest import fundus_bytes


def _engine(tmp_path):
    engine = make_engine(f"sqlite:///{tmp_path / 'w.sqlite3'}")
    with engine.begin() as conn:
        conn.exec_driver_sql("CREATE TABLE t (x INTEGER)")
    return engine


def test_a_waiting_writer_is_handed_the_lock_after_the_holder_commits(tmp_path):
    """SQLite's busy handler alone polls after 1, 3, 8, 18, 33, 53, 78, 103, 128, 178, ... ms: a
    holder that commits at 130 ms would leave the waiter asleep until 178. Here the waiter queues on
    the thread lock and reaches SQLite only once the holder's COMMIT is done. With SQLite's own busy
    timeout at 0, a waiter let through any earlier (say, when SQLAlchemy announces the commit,
    before the driver runs it) fails with 'database is locked'."""
    engine = _engine(tmp_path)
    event.listen(engine, "connect", lambda dbapi_conn, _rec: dbapi_conn.execute("PRAGMA busy_timeout=0"))
    # Listeners of the "commit" event (an audit hook, say) run before the driver's COMMIT; a slow
    # one widens the window in which a lock released on that event lets a waiter in too early.
    event.listen(engine, "commit", lambda _conn: time.sleep(0.05))
    held, order = threading.Event(), []

    def holder() -> None:
        with Session(bind=write_engine(engine)) as s:
            s.execute(text("INSERT INTO t VALUES (1)"))
            held.set()
            time.sleep(0.13)
            s.commit()
            order.append("holder committed")

    t = threading.Thread(target=holder)
    t.start()
    held.wait()
    with Session(bind=write_engine(engine)) as s:
        s.execute(text("INSERT INTO t VALUES (2)"))
        s.commit()
        order.append("waiter committed")
    t.join()
    assert order == ["holder committed", "waiter committed"]
    with Session(bind=engine) as s:
        assert s.execute(text("SELECT x FROM t ORDER BY rowid")).scalars().all() == [1, 2]
    engine.dispose()


def test_the_lock_is_released_by_rollback_close_and_errors(tmp_path):
    engine = _engine(tmp_path)
    w = write_engine(engine)
    with Session(bind=w) as s:  # rollback
        s.execute(text("INSERT INTO t VALUES (1)"))
        s.rollback()
    with Session(bind=w) as s:  # closed mid-transaction
        s.execute(text("INSERT INTO t VALUES (1)"))
    try:
        with Session(bind=w) as s:  # a failing statement
            s.execute(text("INSERT INTO missing VALUES (1)"))
    except Exception:
        pass
    with w.connect() as conn:  # a Core connection returned without ending its transaction
        conn.execute(text("INSERT INTO t VALUES (1)"))
    done = threading.Event()

    def writer() -> None:
        with Session(bind=w) as s:
            s.execute(text("INSERT INTO t VALUES (3)"))
            s.commit()
        done.set()

    threading.Thread(target=writer).start()
    assert done.wait(5), "a writer is still waiting for the lock"
    with Session(bind=engine) as s:
        assert s.execute(text("SELECT count(*) FROM t")).scalar() == 1
    engine.dispose()


@pytest.fixture
def file_app(tmp_path):
    """The real app on a SQLite file (no test transaction around it), an admin's headers."""
    settings = Settings(
        env="test",
        data_dir=tmp_path / "data",
        database_url=f"sqlite:///{tmp_path / 'app.sqlite3'}",
        min_image_side=256,
    )
    with TestClient(create_app(settings)) as client:
        with session_scope(client.app.state.engine) as s:
            user = users.create_user(s, "admin", "a-long-password", "admin")
            token = users.issue_token(s, user, "api", name="t").token
        yield client, {"Authorization": f"Bearer {token}"}, tmp_path / "app.sqlite3"
    client.app.state.engine.dispose()


def test_a_failed_write_request_leaves_the_database_unlocked(file_app):
    """A write request that fails inside its transaction (a label for an unknown image: 404 after
    its first statement took the write lock) must end that transaction: afterwards another
    connection writes at once."""
    client, headers, db_file = file_app
    for _ in range(2):
        r = client.put("/api/v1/images/999/labels/0/0", json={"label": "healthy"}, headers=headers)
        assert r.status_code == 404
        other = sqlite3.connect(db_file, timeout=0, isolation_level=None)
        try:
            other.execute("BEGIN IMMEDIATE")  # raises 'database is locked' if a request kept it
            other.execute("ROLLBACK")
        finally:
            other.close()
    assert client.get("/api/v1/images", headers=headers).status_code == 200


def _begin_modes(engine) -> list[str]:
    modes: list[str] = []
    event.listen(engine, "begin", lambda conn: modes.append(conn.get_execution_options().get("sqlite_begin")))
    return modes


def test_only_the_writing_transaction_of_a_request_takes_the_write_lock(file_app, tiny_checkpoint):
    """The token lookup and /predict's reads run as DEFERRED transactions; only the label insert
    and the prediction's audit row begin IMMEDIATE (SQLite's one write lock)."""
    from app.services import models

    client, headers, _ = file_app
    engine = client.app.state.engine
    with session_scope(engine) as s:
        admin = users.get_user_by_name(s, "admin")
        mv = models.register_model_version(s, tiny_checkpoint, method="ssl_gan", preset="tiny")
        models.activate(s, mv.version, admin)
    image = client.post(
        "/api/v1/images", files={"files": ("eye.jpg", fundus_bytes(3), "image/jpeg")}, headers=headers
    ).json()
    modes = _begin_modes(engine)

    r = client.put(f"/api/v1/images/{image['id']}/labels/2/3", json={"label": "diseased"}, headers=headers)
    assert r.status_code == 200
    assert modes == ["DEFERRED", "IMMEDIATE"]

    modes.clear()
    r = client.post(
        "/api/v1/predict", files={"file": ("x.jpg", fundus_bytes(4), "image/jpeg")}, headers=headers
    )
    assert r.status_code == 200, r.text
    assert modes == ["DEFERRED", "DEFERRED", "IMMEDIATE"]

    modes.clear()
    r = client.post("/api/v1/predict", json={"image_id": image["id"]}, headers=headers)
    assert r.status_code == 200, r.text
    assert modes == ["DEFERRED", "DEFERRED", "IMMEDIATE"]

    # a write session begins IMMEDIATE again once its read transaction was committed
    modes.clear()
    with Session(bind=write_engine(engine)) as s:
        begin_read(s)
        s.execute(text("SELECT 1"))
        s.commit()
        s.execute(text("SELECT 1"))
    assert modes == ["DEFERRED", "IMMEDIATE"]
