"""Running one job: claim it, beat its heart, report progress, honour cancellation.

Both executors (the embedded worker process and RQ workers) call :func:`execute`; the
job's state lives in the database, so a page reload or a restart shows the truth.
"""

from __future__ import annotations

import threading
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field

from sqlalchemy import update
from sqlalchemy.orm import Session, sessionmaker

from backend.db.tables import Job, JobKind, JobStatus, utcnow
from backend.jobs.queue import claim
from backend.settings import Settings

HEARTBEAT_S = 2.0
CHECK_S = 1.0


class JobCancelled(Exception):
    """Raised inside a job when its cancellation was requested."""


@dataclass
class JobContext:
    """What a job handler gets: its record's id, database access and reporting hooks."""

    job_id: int
    project_id: int
    payload: dict
    sessions: sessionmaker[Session]
    settings: Settings
    shutdown: threading.Event = field(default_factory=threading.Event)
    _last_progress: float = 0.0
    _last_check: float = 0.0
    _cancelled: bool = False
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def progress(self, fraction: float, message: str, force: bool = False) -> None:
        """Record progress (throttled to one write a second unless ``force``)."""
        now = time.monotonic()
        if not force and now - self._last_progress < CHECK_S:
            return
        self._last_progress = now
        with self.sessions.begin() as s:
            s.execute(
                update(Job).where(Job.id == self.job_id).values(progress=min(max(fraction, 0.0), 1.0), message=message[:500])
            )

    def should_stop(self) -> bool:
        """True once cancellation was requested or the worker is shutting down (DB checked at most once a second)."""
        if self.shutdown.is_set():
            return True
        now = time.monotonic()
        if not self._cancelled and now - self._last_check >= CHECK_S:
            self._last_check = now
            with self.sessions() as s:
                self._cancelled = bool(s.get(Job, self.job_id).cancel_requested)
        return self._cancelled

    def check_cancel(self) -> None:
        if self.should_stop():
            raise JobCancelled()


Handler = Callable[[JobContext], dict]


def _handlers() -> dict[JobKind, Handler]:
    from backend.services.labelstudio_link import run_sync_job
    from backend.services.retrain import run_predict_job, run_train_job

    return {JobKind.TRAIN: run_train_job, JobKind.PREDICT: run_predict_job, JobKind.SYNC: run_sync_job}


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
    job_id: int, sessions: sessionmaker[Session], settings: Settings, shutdown: threading.Event | None = None
) -> JobStatus | None:
    """Run a queued job to completion; returns its final status (None if not claimed here).

    Setting ``shutdown`` stops the job at its next cancellation check; it then ends FAILED
    ("interrupted"), not CANCELLED, since nobody asked for that. Nothing half-written is registered.
    """
    with sessions.begin() as s:
        if not claim(s, job_id=job_id):
            return None
        job = s.get(Job, job_id)
        kind, project_id, payload = job.kind, job.project_id, dict(job.payload)
    stop = threading.Event()
    beat = threading.Thread(target=_heartbeat, args=(sessions, job_id, stop), daemon=True)
    beat.start()
    ctx = JobContext(job_id, project_id, payload, sessions, settings, shutdown=shutdown or threading.Event())
    status, result, error, message = JobStatus.FAILED, {}, None, "failed"
    try:
        handler = _handlers().get(kind)
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
    with sessions.begin() as s:
        s.execute(
            update(Job)
            .where(Job.id == job_id)
            .values(
                status=status, result=result, error=error, message=message, finished_at=utcnow(),
                progress=1.0 if status is JobStatus.SUCCEEDED else Job.progress,
            )
        )
    return status


def run_here(job_id: int, sessions: sessionmaker[Session], settings: Settings) -> JobStatus | None:
    """Run a queued job in this process, then the jobs it queued for its project (a train's
    pool scoring); the first job's final status."""
    from sqlalchemy import select

    status = execute(job_id, sessions, settings)
    with sessions() as s:
        project_id = s.get(Job, job_id).project_id
        follow = list(s.scalars(select(Job.id).where(
            Job.project_id == project_id, Job.status == JobStatus.QUEUED, Job.id > job_id).order_by(Job.id)))
    for jid in follow:
        execute(jid, sessions, settings)
    return status
