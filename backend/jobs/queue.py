"""Job records: creation, claiming, cancellation and the heartbeat reaper.

The database is the source of truth for every executor: a job is claimed by one atomic
UPDATE (queued -> running), so two workers never run the same job, and a job whose worker
stopped sending heartbeats is marked failed.
"""

from __future__ import annotations

import shutil
from datetime import timedelta
from pathlib import Path
from typing import cast

from pydantic import BaseModel
from sqlalchemy import CursorResult, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from backend.db.tables import Job, JobKind, JobStatus, utcnow
from backend.errors import ConflictError, NotFoundError

ACTIVE = (JobStatus.QUEUED, JobStatus.RUNNING)


def enqueue(session: Session, *, kind: JobKind, project_id: int, payload: BaseModel | None = None) -> Job:
    """Create a queued job with ``payload`` (the kind's model; stored as JSON, unset fields left
    out). A second active train job for a project raises ConflictError."""
    if kind is JobKind.TRAIN:
        running = active_train_job(session, project_id=project_id)
        if running is not None:
            raise ConflictError(_busy(running.status.value, running.id, project_id), running.id)
    body = payload.model_dump(mode="json", exclude_none=True) if payload is not None else {}
    job = Job(kind=kind, project_id=project_id, payload=body, message="queued")
    session.add(job)
    try:
        with session.begin_nested():
            session.flush()
    except IntegrityError:  # a concurrent request won the race: the database index decided
        running = active_train_job(session, project_id=project_id)
        raise ConflictError(
            _busy("running", running.id if running else None, project_id),
            running.id if running else None,
        ) from None
    return job


def _busy(state: str, job_id: int | None, project_id: int) -> str:
    """A second retrain's refusal: which job is in the way and what to do meanwhile."""
    job = f"job {job_id}" if job_id is not None else "its job"
    return (
        f"a retrain is already {state} for this project ({job}): wait for {job} to finish "
        f"(`defectloop status {project_id}` shows its progress; `defectloop retrain {project_id} --wait` follows it), "
        "then try again"
    )


def active_train_job(session: Session, *, project_id: int) -> Job | None:
    return session.scalars(
        select(Job).where(Job.project_id == project_id, Job.kind == JobKind.TRAIN, Job.status.in_(ACTIVE))
    ).first()


def get_job(session: Session, *, job_id: int) -> Job:
    job = session.get(Job, job_id)
    if job is None:
        raise NotFoundError(f"job {job_id} not found")
    return job


def claim(session: Session, *, job_id: int) -> bool:
    """Atomically move a queued job to running; False when someone else got it (or it was cancelled)."""
    now = utcnow()
    res = session.execute(
        update(Job)
        .where(Job.id == job_id, Job.status == JobStatus.QUEUED)
        .values(status=JobStatus.RUNNING, started_at=now, heartbeat_at=now, message="started")
    )
    return cast(CursorResult, res).rowcount == 1


def next_queued(session: Session) -> int | None:
    return session.scalar(select(Job.id).where(Job.status == JobStatus.QUEUED).order_by(Job.id).limit(1))


def request_cancel(session: Session, *, job_id: int) -> Job:
    """Queued jobs are cancelled at once; running ones stop at their next check (seconds)."""
    job = get_job(session, job_id=job_id)
    if job.status is JobStatus.QUEUED:
        job.status = JobStatus.CANCELLED
        job.finished_at = utcnow()
        job.message = "cancelled before it started"
    elif job.status is JobStatus.RUNNING:
        job.cancel_requested = True
        job.message = "cancelling"
    session.flush()
    return job


def job_workdir(data_dir: Path, job_id: int) -> Path:
    """The folder a job may write scratch files to; removed when the job ends, or when the
    reaper finds its worker dead."""
    return data_dir / "jobs" / str(job_id)


def reap_stale(session: Session, *, timeout_s: float, data_dir: Path | None = None) -> list[int]:
    """Mark running jobs whose heartbeat lapsed as failed (their scratch folders under
    ``data_dir`` are removed); returns their ids."""
    cutoff = utcnow() - timedelta(seconds=timeout_s)
    stale = list(session.scalars(select(Job).where(Job.status == JobStatus.RUNNING, Job.heartbeat_at < cutoff)))
    for job in stale:
        job.status = JobStatus.FAILED
        job.finished_at = utcnow()
        job.error = f"the worker stopped responding (no heartbeat for {timeout_s:.0f} s); nothing was registered"
        job.message = "failed: worker lost"
    session.flush()
    if data_dir is not None:
        for job in stale:
            shutil.rmtree(job_workdir(data_dir, job.id), ignore_errors=True)
    return [j.id for j in stale]
