"""Projects: creation and settings (the schema is backend.domain.project_settings)."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from backend.db.tables import Project
from backend.domain.project_settings import ProjectSettings
from backend.errors import ConflictError, NotFoundError


def create_project(session: Session, *, name: str, settings: ProjectSettings | None = None) -> Project:
    """A new project with ``settings`` over the defaults (ConflictError: the name is taken)."""
    project = Project(name=name)
    session.add(project)
    if settings is not None:
        _apply(project, settings)
    try:
        with session.begin_nested():
            session.flush()
    except IntegrityError:
        raise ConflictError(f"name: a project named {name!r} exists already") from None
    return project


def get_project(session: Session, *, project_id: int) -> Project:
    project = session.get(Project, project_id)
    if project is None:
        raise NotFoundError(f"project {project_id} not found")
    return project


def find_project(session: Session, *, ref: str) -> Project:
    """A project by id (digits) or by name."""
    if ref.isdigit():
        return get_project(session, project_id=int(ref))
    project = session.scalars(select(Project).where(Project.name == ref)).first()
    if project is None:
        raise NotFoundError(f"project {ref!r} not found")
    return project


def list_projects(session: Session) -> list[Project]:
    return list(session.scalars(select(Project).order_by(Project.id)))


def update_project(session: Session, *, project_id: int, settings: ProjectSettings) -> Project:
    project = get_project(session, project_id=project_id)
    _apply(project, settings)
    session.flush()
    return project


def _apply(project: Project, settings: ProjectSettings) -> None:
    """Set what ``settings`` gives (validated when it was built: backbone, profile, strategy,
    ranges and the training overrides)."""
    for name, value in settings.given().items():
        setattr(project, name, value)
