from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query
from sqlalchemy import select

from backend.api.deps import MAX_ID, IdPath, SessionDep, SettingsDep, WriteSessionDep
from backend.api.schemas import JobOut
from backend.db.tables import Job
from backend.errors import ConflictError
from backend.jobs import queue
from backend.services.model_versions import active_model_version
from backend.services.projects import get_project
from backend.services.retrain import enqueue_pool_scoring
from backend.services.retrain_request import request_retrain

router = APIRouter(tags=["jobs"])


def job_out(job: Job) -> JobOut:
    return JobOut(
        id=job.id,
        kind=job.kind.value,
        project_id=job.project_id,
        status=job.status.value,
        progress=job.progress,
        message=job.message,
        error=job.error,
        result=job.result or {},
        cancel_requested=job.cancel_requested,
        heartbeat_at=job.heartbeat_at,
        created_at=job.created_at,
        started_at=job.started_at,
        finished_at=job.finished_at,
    )


@router.post("/projects/{project_id}/retrain", status_code=202)
def retrain(project_id: IdPath, session: SessionDep, settings: SettingsDep, skip_sync: bool = False) -> JobOut:
    """Start a retrain job (409 with the running job's id when one is active).

    With a Label Studio project, its answers are synced first (503 when Label Studio cannot
    be reached; ``skip_sync=true`` retrains on the labels already stored).
    """
    job = request_retrain(session, settings, project_id=project_id, skip_sync=skip_sync)
    return job_out(job)


@router.post("/projects/{project_id}/pool-scoring", status_code=202)
def score_pool(project_id: IdPath, session: SessionDep) -> list[JobOut]:
    """Score the pool with the active model version again (a job per chunk of pool images).

    A round selects from a scored pool only, so this is how a scoring that failed or whose
    worker died is run again. 409 when the project has no active model version yet.
    """
    get_project(session, project_id=project_id)
    mv = active_model_version(session, project_id)
    if mv is None:
        raise ConflictError("no active model version to score the pool with: run the bootstrap round first")
    job_ids = enqueue_pool_scoring(session, project_id=project_id, model_version_id=mv.id)
    return [job_out(queue.get_job(session, job_id=j)) for j in job_ids]


@router.get("/jobs")
def list_jobs(
    session: WriteSessionDep,
    settings: SettingsDep,
    project_id: Annotated[int | None, Query(ge=1, le=MAX_ID)] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 50,
) -> list[JobOut]:
    queue.reap_stale(session, timeout_s=settings.heartbeat_timeout_s, data_dir=settings.data_dir)
    q = select(Job).order_by(Job.id.desc()).limit(min(max(limit, 1), 500))
    if project_id is not None:
        q = q.where(Job.project_id == project_id)
    return [job_out(j) for j in session.scalars(q)]


@router.get("/jobs/{job_id}")
def get_job(job_id: IdPath, session: WriteSessionDep, settings: SettingsDep) -> JobOut:
    queue.reap_stale(session, timeout_s=settings.heartbeat_timeout_s, data_dir=settings.data_dir)
    return job_out(queue.get_job(session, job_id=job_id))


@router.post("/jobs/{job_id}/cancel")
def cancel_job(job_id: IdPath, session: SessionDep) -> JobOut:
    """Cancel a queued job now, or ask a running one to stop (it does within seconds)."""
    return job_out(queue.request_cancel(session, job_id=job_id))
