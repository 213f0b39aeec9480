"""Database fixtures: every database test runs on SQLite and on PostgreSQL.

PostgreSQL: DEFECTLOOP_TEST_POSTGRES_URL (default postgresql://postgres@127.0.0.1:5432/test);
each test gets its own schema, dropped afterwards. Skipped with a message where no server answers.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator

import pytest
from sqlalchemy import Engine, text

from backend.db.engine import make_engine

PG_URL = os.environ.get("DEFECTLOOP_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test")


def _postgres_available() -> str | None:
    try:
        engine = make_engine(PG_URL, connect_args={"connect_timeout": 3})
        with engine.connect() as conn:
            conn.execute(text("select 1"))
        engine.dispose()
        return None
    except Exception as e:  # noqa: BLE001 - any failure means: no server to test against
        return f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}"


def _missing_service(message: str) -> None:
    """Skip, or fail where CI demands every service (DEFECTLOOP_REQUIRE_SERVICES=1)."""
    if os.environ.get("DEFECTLOOP_REQUIRE_SERVICES") == "1":
        pytest.fail(message)
    pytest.skip(message)


@pytest.fixture
def missing_service():
    """Call with a message when a service is absent: skips locally, fails in CI."""
    return _missing_service


@pytest.fixture(params=["sqlite", "postgresql"])
def db_url(request: pytest.FixtureRequest, tmp_path) -> Iterator[str]:
    """The URL of an empty database of each kind (PostgreSQL: a fresh schema, dropped after)."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'test.db'}"
        return
    why = _postgres_available()
    if why:
        _missing_service(f"PostgreSQL not reachable at {PG_URL} ({why}); set DEFECTLOOP_TEST_POSTGRES_URL")
    schema = f"t_{uuid.uuid4().hex[:12]}"
    admin = make_engine(PG_URL)
    with admin.begin() as conn:
        conn.execute(text(f'CREATE SCHEMA "{schema}"'))
    sep = "&" if "?" in PG_URL else "?"
    try:
        yield f"{PG_URL}{sep}options=-csearch_path%3D{schema}"
    finally:
        with admin.begin() as conn:
            conn.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
        admin.dispose()


@pytest.fixture
def engine(db_url: str) -> Iterator[Engine]:
    """An empty database (not migrated) of each kind."""
    eng = make_engine(db_url)
    yield eng
    eng.dispose()


@pytest.fixture
def migrated(engine: Engine) -> Engine:
    from backend.db.migrate import upgrade

    upgrade(engine)
    return engine
