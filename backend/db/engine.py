"""Engines and sessions for SQLite (embedded default, WAL) and PostgreSQL.

SQLite allows one writer at a time. A transaction that starts as a reader and later writes
cannot wait for the lock (SQLite answers "database is locked" at once, since its snapshot may
be stale), so every SQLite transaction here begins with ``BEGIN IMMEDIATE``: it takes the
write lock up front and waits for it (busy timeout). Writers of one process first queue on a
lock of the engine's, so they take turns in order instead of all polling SQLite (whose busy
handler sleeps up to 100 ms between tries); other processes still meet at SQLite's lock. Requests that only read use
:func:`read_session_factory`, whose transactions begin ``DEFERRED`` and never wait on
writers (WAL). Issuing ``BEGIN`` ourselves also makes savepoints real on SQLite: without it
the driver starts no transaction before a first ``SAVEPOINT``, and releasing that savepoint
commits for good.
"""

from __future__ import annotations

import sqlite3
import threading
from pathlib import Path

from sqlalchemy import Connection, Engine, create_engine, event
from sqlalchemy.engine import make_url
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session, sessionmaker

#: How long a SQLite writer waits for the write lock before "database is locked".
SQLITE_BUSY_TIMEOUT_S = 30.0
_BEGIN_OPTION = "defectloop_sqlite_begin"
_HOLDS_WRITER = "defectloop_holds_writer"


def normalise_url(url: str) -> str:
    """Accept plain ``postgresql://`` URLs and use the psycopg 3 driver for them."""
    u = make_url(url)
    if u.drivername in ("postgresql", "postgres"):
        u = u.set(drivername="postgresql+psycopg")
    return u.render_as_string(hide_password=False)


def make_engine(url: str, *, busy_timeout_s: float = SQLITE_BUSY_TIMEOUT_S, **kwargs: object) -> Engine:
    """An engine; SQLite files get WAL, foreign keys, a busy timeout and ``BEGIN IMMEDIATE``."""
    url = normalise_url(url)
    u = make_url(url)
    if u.get_backend_name() == "sqlite":
        if u.database and u.database != ":memory:":
            Path(u.database).parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(url, connect_args={"timeout": busy_timeout_s}, **kwargs)

        @event.listens_for(engine, "connect")
        def _sqlite_pragmas(dbapi_conn, _record) -> None:
            dbapi_conn.isolation_level = None  # the driver's own BEGIN off: _sqlite_begin issues it
            cur = dbapi_conn.cursor()
            cur.execute("PRAGMA journal_mode=WAL")
            cur.execute("PRAGMA foreign_keys=ON")
            cur.execute("PRAGMA synchronous=NORMAL")
            cur.close()

        writer = threading.Lock()  # writers of this process queue here, in order, instead of polling SQLite

        @event.listens_for(engine, "begin")
        def _sqlite_begin(conn: Connection) -> None:
            mode = conn.get_execution_options().get(_BEGIN_OPTION, "IMMEDIATE")
            if mode == "IMMEDIATE":
                if not writer.acquire(timeout=busy_timeout_s):
                    raise OperationalError("BEGIN IMMEDIATE", None, sqlite3.OperationalError("database is locked"))
                conn.info[_HOLDS_WRITER] = True
            try:
                conn.exec_driver_sql(f"BEGIN {mode}")
            except BaseException:
                _release(conn)
                raise

        def _release(conn: Connection) -> None:
            if conn.info.pop(_HOLDS_WRITER, False):
                writer.release()

        event.listen(engine, "commit", _release)
        event.listen(engine, "rollback", _release)
        return engine
    return create_engine(url, pool_pre_ping=True, **kwargs)


def session_factory(engine: Engine) -> sessionmaker[Session]:
    """Sessions for work that may write (on SQLite each transaction holds the write lock)."""
    return sessionmaker(engine, expire_on_commit=False)


def read_session_factory(engine: Engine) -> sessionmaker[Session]:
    """Sessions for work that only reads: on SQLite they never wait for (nor block) a writer.
    Writing through them works but may fail with "database is locked" under contention."""
    if engine.dialect.name == "sqlite":
        engine = engine.execution_options(**{_BEGIN_OPTION: "DEFERRED"})
    return sessionmaker(engine, expire_on_commit=False)
