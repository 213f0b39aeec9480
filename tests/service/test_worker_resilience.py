"""The job runner survives a database that refuses writes for a while (SQLite's write lock
held by someone else): progress and cancellation checks are skipped, never fatal; the final
status is retried until it lands; the worker loop waits and goes on."""

from __future__ import annotations

import sqlite3
import threading
import time
from pathlib import Path
from typing import Self

import pytest
from sqlalchemy import Engine

from backend.db.engine import make_engine, session_factory
from backend.db.migrate import upgrade
from backend.db.tables import Job, JobKind, JobStatus, Worker, WorkerKind
from backend.jobs import runner
from backend.jobs.presence import Presence, alive_workers
from backend.jobs.queue import enqueue, job_workdir, reap_stale
from backend.services.projects import create_project
from backend.settings import Settings


@pytest.fixture
def sqlite_db(tmp_path: Path) -> tuple[str, Engine]:
    url = f"sqlite:///{tmp_path / 'db.sqlite'}"
    engine = make_engine(url)
    upgrade(engine)
    yield url, engine
    engine.dispose()


class WriteLock:
    """Hold SQLite's write lock from a connection of our own until released."""

    def __init__(self, path: str) -> None:
        self.conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False)

    def __enter__(self) -> Self:
        self.conn.execute("BEGIN IMMEDIATE")
        return self

    def release(self) -> None:
        if self.conn.in_transaction:
            self.conn.execute("COMMIT")

    def __exit__(self, *_: object) -> None:
        self.release()
        self.conn.close()


def _queued_job(engine: Engine) -> int:
    with session_factory(engine).begin() as s:
        project = create_project(s, name="p")
        return enqueue(s, kind=JobKind.SYNC, project_id=project.id).id


def test_progress_and_checks_skip_while_the_database_is_locked_and_the_job_finishes(
    sqlite_db, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    url, engine = sqlite_db
    job_id = _queued_job(engine)
    fast = make_engine(url, busy_timeout_s=0.2)  # the runner gives up on a locked write in 0.2 s
    lock = WriteLock(url.removeprefix("sqlite:///"))
    seen: dict[str, object] = {}

    def handler(ctx: runner.JobContext) -> dict:
        (ctx.workdir / "scratch.bin").write_bytes(b"x")
        seen["workdir"] = ctx.workdir
        with lock:
            ctx.progress(0.5, "half way", force=True)  # refused: skipped, not raised
            assert ctx.should_stop() is False  # reads never wait for the writer
        return {"ok": True}

    monkeypatch.setattr(runner, "FINAL_WRITE_BACKOFF_S", (0.3,) * 20)
    lock2 = WriteLock(url.removeprefix("sqlite:///"))

    def hold_during_finish() -> None:  # lock again as the handler returns: the final write retries
        lock2.__enter__()
        time.sleep(1.5)
        lock2.release()

    original = runner._finish

    def finish_under_lock(*args, **kwargs):
        t = threading.Thread(target=hold_during_finish)
        t.start()
        time.sleep(0.2)
        try:
            return original(*args, **kwargs)
        finally:
            t.join()

    monkeypatch.setattr(runner, "_finish", finish_under_lock)
    settings = Settings(data_dir=tmp_path / "data", database_url=url)
    status = runner.execute(job_id, session_factory(fast), settings, {JobKind.SYNC: handler})
    lock2.conn.close()
    assert status is JobStatus.SUCCEEDED
    with session_factory(engine)() as s:
        job = s.get(Job, job_id)
        assert job.status is JobStatus.SUCCEEDED and job.result == {"ok": True} and job.progress == 1.0
    assert not Path(seen["workdir"]).exists()  # scratch files go with the job
    fast.dispose()


def test_progress_never_goes_backwards(sqlite_db, tmp_path: Path) -> None:
    _url, engine = sqlite_db
    job_id = _queued_job(engine)
    ctx = runner.JobContext(job_id, 1, {}, session_factory(engine), Settings(data_dir=tmp_path))
    ctx.progress(0.6, "stage two", force=True)
    ctx.progress(0.2, "a late report of stage one", force=True)
    with session_factory(engine)() as s:
        job = s.get(Job, job_id)
        assert job.progress == pytest.approx(0.6) and job.message == "a late report of stage one"


def test_reaping_a_dead_workers_job_removes_its_scratch_files(sqlite_db, tmp_path: Path) -> None:
    _, engine = sqlite_db
    job_id = _queued_job(engine)
    with session_factory(engine).begin() as s:
        job = s.get(Job, job_id)
        job.status = JobStatus.RUNNING
        from backend.db.tables import utcnow

        job.heartbeat_at = utcnow()
    work = job_workdir(tmp_path, job_id)
    (work / "model").mkdir(parents=True)
    (work / "model" / "weights.pt").write_bytes(b"half")
    time.sleep(0.3)
    with session_factory(engine).begin() as s:
        assert reap_stale(s, timeout_s=0.1, data_dir=tmp_path) == [job_id]
    assert not work.exists()


def test_a_worker_is_alive_while_present_and_gone_after(sqlite_db) -> None:
    _, engine = sqlite_db
    sessions = session_factory(engine)
    with Presence(sessions, WorkerKind.EMBEDDED, beat_s=0.2) as presence:
        presence.job_id = 7
        time.sleep(0.6)
        with sessions() as s:
            (w,) = alive_workers(s, timeout_s=5)
            assert w.name == presence.name and w.job_id == 7
    with sessions() as s:
        assert alive_workers(s, timeout_s=5) == [] and s.query(Worker).count() == 0
