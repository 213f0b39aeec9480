from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version

from fastapi import APIRouter
from sqlalchemy import text

from backend.api.deps import SessionDep

public = APIRouter(tags=["system"])
router = APIRouter(tags=["system"])


@public.get("/health")
def health(session: SessionDep) -> dict[str, str]:
    """Liveness and database reachability (no token needed)."""
    session.execute(text("select 1"))
    return {"status": "ok"}


@router.get("/version")
def get_version() -> dict[str, str]:
    try:
        v = version("defectloop")
    except PackageNotFoundError:
        v = "unknown"
    return {"defectloop": v}
