"""A job reaches the executor once, after the commit that created it; never when its
transaction or savepoint rolled back (SQLite and PostgreSQL)."""

from __future__ import annotations

import pytest
from sqlalchemy import Engine

from backend.db.engine import session_factory
from backend.db.tables import JobKind
from backend.jobs import dispatch
from backend.jobs.queue import enqueue
from backend.services.projects import create_project
from backend.settings import Settings


@pytest.fixture
def announced(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    seen: list[int] = []
    monkeypatch.setattr(dispatch, "submit", lambda _settings, job_id: seen.append(job_id))
    return seen


def test_jobs_are_announced_after_their_commit_only(migrated: Engine, announced: list[int]) -> None:
    sessions = dispatch.dispatch_on_commit(session_factory(migrated), Settings(redis_url="redis://127.0.0.1:6379/15"))
    with sessions.begin() as s:
        pid = create_project(s, name="p").id
        job = enqueue(s, kind=JobKind.SYNC, project_id=pid)
        s.flush()
        assert announced == []  # flushed, not committed: nobody hears of it yet
    assert announced == [job.id]

    with pytest.raises(RuntimeError), sessions.begin() as s:
        enqueue(s, kind=JobKind.SYNC, project_id=pid)
        s.flush()
        raise RuntimeError("the request failed")
    with sessions.begin() as s:
        nested = s.begin_nested()
        enqueue(s, kind=JobKind.SYNC, project_id=pid)
        s.flush()
        nested.rollback()  # only the savepoint
        kept = enqueue(s, kind=JobKind.SYNC, project_id=pid)
    assert announced == [job.id, kept.id]


def test_the_embedded_executor_needs_no_announcement(migrated: Engine, announced: list[int]) -> None:
    sessions = dispatch.dispatch_on_commit(session_factory(migrated), Settings(redis_url=None))
    with sessions.begin() as s:
        enqueue(s, kind=JobKind.SYNC, project_id=create_project(s, name="p").id)
    assert announced == []
