"""SQLite writers of one process queue on a thread lock, released however a transaction ends."""

from __future__ import annotations

import threading
import time

from sqlalchemy import text
from sqlalchemy.orm import Session

from app.db.session import make_engine, write_engine


def _engine(tmp_path):
    engine = make_engine(f"sqlite:///{tmp_path / 'w.sqlite3'}")
    with engine.begin() as conn:
        conn.exec_driver_sql("CREATE TABLE t (x INTEGER)")
    return engine


def test_a_waiting_writer_starts_as_soon_as_the_holder_commits(tmp_path):
    """With SQLite's busy handler alone the waiter polls after 1, 3, 8, 18, 33, 53, 78, 103, 128,
    178, ... ms: a holder that commits at 130 ms would leave it asleep until 178. Here it is handed
    the lock when the holder commits."""
    engine = _engine(tmp_path)
    held, started = threading.Event(), {}

    def holder() -> None:
        with Session(bind=write_engine(engine)) as s:
            s.execute(text("INSERT INTO t VALUES (1)"))
            held.set()
            time.sleep(0.13)
            started["released"] = time.perf_counter()
            s.commit()

    t = threading.Thread(target=holder)
    t.start()
    held.wait()
    with Session(bind=write_engine(engine)) as s:
        s.execute(text("INSERT INTO t VALUES (2)"))
        started["waiter"] = time.perf_counter()
        s.commit()
    t.join()
    assert started["waiter"] >= started["released"]
    assert started["waiter"] - started["released"] < 0.025  # polling would take ~45 ms
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


def test_a_failed_write_request_leaves_the_database_unlocked(tmp_path):
    """A write request that fails inside its transaction (a label for an unknown image: 404 after
    its first statement took the write lock) must end that transaction, and a request that
    committed must hold nothing: afterwards another connection writes at once."""
    import sqlite3

    from fastapi.testclient import TestClient

    from app.core.config import Settings
    from app.db.session import session_scope
    from app.main import create_app
    from app.services import users

    db_file = tmp_path / "app.sqlite3"
    settings = Settings(env="test", data_dir=tmp_path / "data", database_url=f"sqlite:///{db_file}")
    with TestClient(create_app(settings)) as client:
        with session_scope(client.app.state.engine) as s:
            user = users.create_user(s, "annotator", "a-long-password", "annotator")
            token = users.issue_token(s, user, "api", name="t").token
        headers = {"Authorization": f"Bearer {token}"}
        for expected in (404, 404):
            r = client.put("/api/v1/images/999/labels/0/0", json={"label": "healthy"}, headers=headers)
            assert r.status_code == expected
            other = sqlite3.connect(db_file, timeout=0, isolation_level=None)
            try:
                other.execute("BEGIN IMMEDIATE")  # raises 'database is locked' if a request kept it
                other.execute("ROLLBACK")
            finally:
                other.close()
        assert client.get("/api/v1/images", headers=headers).status_code == 200
