"""Engines and sessions for SQLite (embedded default) and PostgreSQL (psycopg 3).

SQLite runs in WAL mode with a busy timeout so that readers never block writers. Requests that
write begin their transaction with ``BEGIN IMMEDIATE`` (see ``write_engine``): a deferred SQLite
transaction that reads and then writes fails at once with SQLITE_BUSY when another writer committed
in between, which 20 annotators labeling at the same time would hit constantly.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.engine import make_url
from sqlalchemy.orm import Session, sessionmaker

WRITER_WAIT_S = 30.0  # as long as SQLite's busy timeout
_HOLDS_WRITER = "patchscreen_holds_writer_lock"


def normalise_url(url: str) -> str:
    """Accept the conventional ``postgresql://`` / ``postgres://`` and use psycopg 3 for them."""
    if url.startswith("postgres://"):
        url = "postgresql://" + url[len("postgres://") :]
    if url.startswith("postgresql://"):
        url = "postgresql+psycopg://" + url[len("postgresql://") :]
    return url


def make_engine(url: str, **kwargs) -> Engine:
    url = normalise_url(url)
    parsed = make_url(url)
    if parsed.get_backend_name() != "sqlite":
        kwargs.setdefault("pool_pre_ping", True)
        kwargs.setdefault("pool_size", 10)
        kwargs.setdefault("max_overflow", 20)
        return create_engine(url, **kwargs)

    if parsed.database and parsed.database != ":memory:":
        Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
    connect_args = kwargs.pop("connect_args", {})
    connect_args.setdefault("check_same_thread", False)
    connect_args.setdefault("timeout", 30)
    kwargs.setdefault("pool_size", 10)
    kwargs.setdefault("max_overflow", 20)
    engine = create_engine(url, connect_args=connect_args, **kwargs)

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_conn, _record) -> None:
        # Let SQLAlchemy, not the driver, emit BEGIN (the driver's implicit BEGIN is always DEFERRED).
        dbapi_conn.isolation_level = None
        cur = dbapi_conn.cursor()
        cur.execute("PRAGMA journal_mode=WAL")
        cur.execute("PRAGMA foreign_keys=ON")
        cur.execute("PRAGMA busy_timeout=30000")
        cur.execute("PRAGMA synchronous=NORMAL")
        cur.close()

    # Writers of this process queue on a lock before BEGIN IMMEDIATE: SQLite's own busy handler
    # polls with sleeps of up to 100 ms, so a writer that finds the lock taken for 5 ms could sleep
    # far longer; a thread lock hands over the moment the holder commits. Other processes (the
    # local worker, a CLI) still meet at SQLite's lock and its busy timeout.
    writer = threading.Lock()

    def _release(conn) -> None:  # conn: a Connection, a pool entry or a proxied DBAPI connection
        try:
            held = conn.info.pop(_HOLDS_WRITER, False)
        except NotImplementedError:  # the ad-hoc connection of the dialect's first connect has no info
            return
        if held:
            writer.release()

    # Hand the lock over only once SQLite has ended the transaction: the Connection's "commit" and
    # "rollback" events fire before the driver's COMMIT, so a waiter woken there would meet SQLite's
    # still-held lock and fall back to its polling busy handler.
    dialect = engine.dialect  # one dialect object per engine: wrapping it touches no other engine
    for name in ("do_commit", "do_rollback"):
        end = getattr(dialect, name)

        def _end_then_release(dbapi_conn, _end=end) -> None:
            try:
                _end(dbapi_conn)
            finally:
                _release(dbapi_conn)

        setattr(dialect, name, _end_then_release)

    @event.listens_for(engine, "begin")
    def _on_begin(conn) -> None:
        mode = conn.get_execution_options().get("sqlite_begin", "DEFERRED")
        if mode == "IMMEDIATE" and writer.acquire(timeout=WRITER_WAIT_S):
            conn.info[_HOLDS_WRITER] = True  # else SQLite's busy timeout decides, as before
        try:
            conn.exec_driver_sql(f"BEGIN {mode}")
        except BaseException:
            _release(conn)
            raise

    @event.listens_for(engine, "checkin")
    def _on_checkin(_dbapi_conn, record) -> None:  # a connection returned mid-transaction
        _release(record)

    @event.listens_for(engine, "invalidate")
    def _on_invalidate(_dbapi_conn, record, _exc) -> None:  # closed: SQLite dropped its lock too
        _release(record)

    return engine


def is_sqlite(engine: Engine) -> bool:
    return engine.dialect.name == "sqlite"


def write_engine(engine: Engine) -> Engine:
    """The engine to use for a unit of work that will write (takes SQLite's write lock up front)."""
    if is_sqlite(engine):
        return engine.execution_options(sqlite_begin="IMMEDIATE")
    return engine


def begin_read(session: Session) -> None:
    """Start a write session's next transaction as a plain read (SQLite: ``BEGIN DEFERRED``).

    A write request reads first (its token, the active model) and commits before its real work;
    under ``BEGIN IMMEDIATE`` that read would take the database's single write lock and queue
    behind every label write in flight, for a transaction that writes nothing. The transaction
    after it begins ``IMMEDIATE`` again. No effect on PostgreSQL, or inside a transaction.
    """
    if session.in_transaction() or not is_sqlite(session.get_bind()):
        return
    session.connection(execution_options={"sqlite_begin": "DEFERRED"})


def make_sessionmaker(engine: Engine) -> sessionmaker[Session]:
    return sessionmaker(bind=engine, expire_on_commit=False)


@contextmanager
def session_scope(engine: Engine, *, write: bool = True) -> Iterator[Session]:
    """A session for code outside a request (workers, CLI): commit on success, roll back on error."""
    bind = write_engine(engine) if write else engine
    with Session(bind=bind, expire_on_commit=False) as session:
        try:
            yield session
            session.commit()
        except BaseException:
            session.rollback()
            raise
