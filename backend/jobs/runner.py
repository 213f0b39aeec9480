"""Running one job: claim it, beat its heart, report progress, honour cancellation.

Both executors (the embedded worker process and RQ workers) call :func:`execute`; the
job's state lives in the database, so a page reload or a restart shows the truth.
"""

from __future__ import annotations

import logging
import shutil
import threading
import time
import traceback
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from sqlalchemy import case, select, update
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session, sessionmaker

from backend.db.engine import read_session_factory
from backend.db.tables import Job, JobKind, JobStatus, utcnow
from backend.jobs.queue import claim, job_workdir
from backend.settings import Settings

HEARTBEAT_S = 2.0
CHECK_S = 1.0
#: Waits between attempts to record a job's final status (a lock or a lost connection passes).
FINAL_WRITE_BACKOFF_S = (0.5, 1, 2, 4, 8, 15, 30, 30)

log = logging.getLogger("defectloop.worker")


class JobCancelled(Exception):
    """Raised inside a job when its cancellation was requested."""


@dataclass
class JobContext:
    """What a job handler gets: its record's id, database access and reporting hooks.

    ``sessions`` may write (on SQLite a transaction holds the database's write lock until it
    ends: keep them short, and never report progress from inside one); ``read_sessions``
    only read and never wait for a writer."""

    job_id: int
    project_id: int
    payload: dict
    sessions: sessionmaker[Session]
    settings: Settings
    read_sessions: sessionmaker[Session] | None = None
    shutdown: threading.Event = field(default_factory=threading.Event)
    _last_progress: float = 0.0
    _last_check: float = 0.0
    _cancelled: bool = False
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def __post_init__(self) -> None:
        if self.read_sessions is None:
            self.read_sessions = read_session_factory(self.sessions.kw["bind"])

    def reads(self) -> Session:
        """A read-only session (use as a context manager); it never waits for a writer."""
        return self._read_factory()()

    def _read_factory(self) -> sessionmaker[Session]:
        if self.read_sessions is None:
            self.read_sessions = read_session_factory(self.sessions.kw["bind"])
        return self.read_sessions

    @property
    def workdir(self) -> Path:
        """This job's scratch folder (see :func:`job_workdir`; created on first use)."""
        path = job_workdir(self.settings.data_dir, self.job_id)
        path.mkdir(parents=True, exist_ok=True)
        return path

    def progress(self, fraction: float, message: str, force: bool = False) -> None:
        """Record progress (throttled to one write a second unless ``force``). Never fails the
        job: a write the database refuses (locked, connection lost) is skipped, and the next
        one carries the news. Progress never goes backwards."""
        now = time.monotonic()
        if not force and now - self._last_progress < CHECK_S:
            return
        self._last_progress = now
        value = min(max(fraction, 0.0), 1.0)
        try:
            with self.sessions.begin() as s:
                s.execute(
                    update(Job)
                    .where(Job.id == self.job_id)
                    .values(progress=case((Job.progress > value, Job.progress), else_=value), message=message[:500])
                )
        except SQLAlchemyError as e:
            log.warning("job %s: progress not recorded (%s)", self.job_id, str(e).splitlines()[0])

    def should_stop(self) -> bool:
        """True once cancellation was requested or the worker is shutting down (DB checked at most once a second)."""
        if self.shutdown.is_set():
            return True
        now = time.monotonic()
        if not self._cancelled and now - self._last_check >= CHECK_S:
            self._last_check = now
            try:
                with self.reads() as s:
                    job = s.get(Job, self.job_id)
                    self._cancelled = bool(job is not None and job.cancel_requested)
            except SQLAlchemyError as e:  # asked again at the next check
                log.warning("job %s: cancellation not checked (%s)", self.job_id, str(e).splitlines()[0])
        return self._cancelled

    def check_cancel(self) -> None:
        if self.should_stop():
            raise JobCancelled()


Handler = Callable[[JobContext], dict]
#: What runs each kind of job: handed to the executors by the composition root
#: (backend.handlers); this package never imports the services that implement them.
Handlers = Mapping[JobKind, Handler]


def _heartbeat(sessions: sessionmaker[Session], job_id: int, stop: threading.Event) -> None:
    while not stop.wait(HEARTBEAT_S):
        try:
            with sessions.begin() as s:
                s.execute(update(Job).where(Job.id == job_id).values(heartbeat_at=utcnow()))
        except Exception:  # noqa: BLE001, S110 - a missed beat is retried; the reaper judges silence
            pass


def _stopped(ctx: JobContext) -> tuple[JobStatus, str]:
    if ctx._cancelled:
        return JobStatus.CANCELLED, "cancelled"
    return JobStatus.FAILED, "interrupted: the worker stopped; request the job again"


def execute(
    job_id: int,
    sessions: sessionmaker[Session],
    settings: Settings,
    handlers: Handlers,
    shutdown: threading.Event | None = None,
) -> JobStatus | None:
    """Run a queued job to completion; returns its final status (None if not claimed here).

    Setting ``shutdown`` stops the job at its next cancellation check; it then ends FAILED
    ("interrupted"), not CANCELLED, since nobody asked for that. Nothing half-written is registered.
    """
    with sessions.begin() as s:
        if not claim(s, job_id=job_id):
            return None
        job = s.get(Job, job_id)
        assert job is not None  # just claimed in this transaction
        kind, project_id, payload = job.kind, job.project_id, dict(job.payload)
    stop = threading.Event()
    beat = threading.Thread(target=_heartbeat, args=(sessions, job_id, stop), daemon=True)
    beat.start()
    ctx = JobContext(job_id, project_id, payload, sessions, settings, shutdown=shutdown or threading.Event())
    status, result, error, message = JobStatus.FAILED, {}, None, "failed"
    try:
        handler = handlers.get(kind)
        if handler is None:
            raise NotImplementedError(f"no handler for job kind {kind.value}")
        result = handler(ctx)
        status, message = JobStatus.SUCCEEDED, "done"
    except JobCancelled:
        status, message = _stopped(ctx)
    except Exception as e:  # noqa: BLE001 - every failure ends up on the job record
        if ctx._cancelled or ctx.shutdown.is_set():
            status, message = _stopped(ctx)
        else:
            error = f"{type(e).__name__}: {e}\n{traceback.format_exc(limit=8)}"[:4000]
            message = f"failed: {e}"[:500]
    finally:
        stop.set()
        beat.join(timeout=5)
        shutil.rmtree(job_workdir(settings.data_dir, job_id), ignore_errors=True)
    _finish(sessions, job_id, status=status, result=result, error=error, message=message)
    return status


def _finish(sessions: sessionmaker[Session], job_id: int, **values: object) -> bool:
    """Record a job's final status, retrying while the database refuses; False when it never
    did (the reaper then marks the job failed once its heartbeat lapses)."""
    for wait in (*FINAL_WRITE_BACKOFF_S, None):
        try:
            with sessions.begin() as s:
                s.execute(
                    update(Job)
                    .where(Job.id == job_id)
                    .values(
                        **values,
                        finished_at=utcnow(),
                        progress=1.0 if values["status"] is JobStatus.SUCCEEDED else Job.progress,
                    )
                )
            return True
        except SQLAlchemyError as e:
            if wait is None:
                log.error("job %s: final status %s not recorded: %s", job_id, values["status"], e)
                return False
            log.warning(
                "job %s: final status not recorded yet (%s); retrying in %s s", job_id, str(e).splitlines()[0], wait
            )
            time.sleep(wait)
    return False


def run_here(job_id: int, sessions: sessionmaker[Session], settings: Settings, handlers: Handlers) -> JobStatus | None:
    """Run a queued job in this process, then the jobs it queued for its project (a train's
    pool scoring); the first job's final status."""
    status = execute(job_id, sessions, settings, handlers)
    with read_session_factory(sessions.kw["bind"])() as s:
        job = s.get(Job, job_id)
        if job is None:
            return status
        project_id = job.project_id
        follow = list(
            s.scalars(
                select(Job.id)
                .where(Job.project_id == project_id, Job.status == JobStatus.QUEUED, Job.id > job_id)
                .order_by(Job.id)
            )
        )
    for jid in follow:
        execute(jid, sessions, settings, handlers)
    return status
