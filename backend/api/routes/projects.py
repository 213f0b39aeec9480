from __future__ import annotations

from fastapi import APIRouter

from backend.api.deps import IdPath, SessionDep
from backend.api.schemas import ProjectCreate, ProjectOut, ProjectUpdate
from backend.services import projects as svc

router = APIRouter(prefix="/projects", tags=["projects"])


@router.post("", status_code=201)
def create_project(body: ProjectCreate, session: SessionDep) -> ProjectOut:
    """Create a project (409 when the name is taken)."""
    return ProjectOut.model_validate(svc.create_project(session, name=body.name, settings=body))


@router.get("")
def list_projects(session: SessionDep) -> list[ProjectOut]:
    return [ProjectOut.model_validate(p) for p in svc.list_projects(session)]


@router.get("/{project_id}")
def get_project(project_id: IdPath, session: SessionDep) -> ProjectOut:
    return ProjectOut.model_validate(svc.get_project(session, project_id=project_id))


@router.patch("/{project_id}")
def update_project(project_id: IdPath, body: ProjectUpdate, session: SessionDep) -> ProjectOut:
    """Change image size, backbone, profile or label costs."""
    return ProjectOut.model_validate(svc.update_project(session, project_id=project_id, settings=body))
