from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version
from typing import Any

from fastapi import APIRouter
from sqlalchemy import func, select

from backend.api.deps import SessionDep, SettingsDep
from backend.db.tables import Job, JobStatus
from backend.jobs.presence import alive_workers

public = APIRouter(tags=["system"])
router = APIRouter(tags=["system"])


@public.get("/health")
def health(session: SessionDep, settings: SettingsDep) -> dict[str, Any]:
    """Liveness, database reachability and the job workers (no token needed).

    ``status`` is ``ok``, or ``degraded`` while no job worker is alive (the API answers, but
    queued jobs wait until one starts: `serve` restarts its own; RQ workers are yours to run).
    """
    workers = alive_workers(session, timeout_s=settings.heartbeat_timeout_s)
    queued = session.scalar(select(func.count(Job.id)).where(Job.status == JobStatus.QUEUED)) or 0
    out: dict[str, Any] = {
        "status": "ok" if workers else "degraded",
        "database": "ok",
        "workers": len(workers),
        "jobs_queued": queued,
        "running_jobs": [w.job_id for w in workers if w.job_id is not None],
    }
    if not workers:
        out["detail"] = (
            f"no job worker has reported in the last {settings.heartbeat_timeout_s:.0f} s: "
            f"{queued} queued job(s) wait until one runs (`defectloop worker`, or restart `serve`)"
        )
    return out


@router.get("/version")
def get_version() -> dict[str, str]:
    try:
        v = version("defectloop")
    except PackageNotFoundError:
        v = "unknown"
    return {"defectloop": v}
