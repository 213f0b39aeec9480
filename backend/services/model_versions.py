"""Which model version a project's proposals come from."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import Session

from backend.db.tables import (
    ModelVersion,
)


def active_model_version(session: Session, project_id: int) -> ModelVersion | None:
    return session.scalars(
        select(ModelVersion).where(ModelVersion.project_id == project_id, ModelVersion.is_active)
    ).first()
