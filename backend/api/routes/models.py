from __future__ import annotations

from fastapi import APIRouter
from sqlalchemy import select, update
from sqlalchemy.orm import Session

from backend.api.deps import IdPath, SessionDep
from backend.api.schemas import ModelVersionDetail, ModelVersionOut, SeriesPoint
from backend.db.tables import Label, ModelVersion
from backend.errors import NotFoundError
from backend.services.projects import get_project

router = APIRouter(tags=["model versions"])


def mv_out(mv: ModelVersion) -> ModelVersionOut:
    """A model version as the API lists it."""
    return ModelVersionOut(
        id=mv.id,
        project_id=mv.project_id,
        round_id=mv.round_id,
        name=mv.name,
        regime=mv.regime,
        profile=mv.profile,
        artifact_sha256=mv.artifact_sha256,
        thresholds=mv.thresholds,
        metrics=mv.metrics,
        is_active=mv.is_active,
        created_at=mv.created_at,
        n_labels=len(mv.label_ids or []),
    )


def mv_detail(mv: ModelVersion) -> ModelVersionDetail:
    """A model version with its config and training-label snapshot."""
    extra = {"config": mv.config, "label_ids": [int(i) for i in mv.label_ids or []]}
    return ModelVersionDetail.model_validate({**mv_out(mv).model_dump(), **extra})


def _get(session: Session, model_version_id: int) -> ModelVersion:
    mv = session.get(ModelVersion, model_version_id)
    if mv is None:
        raise NotFoundError(f"model version {model_version_id} not found")
    return mv


@router.get("/projects/{project_id}/model-versions")
def list_model_versions(project_id: IdPath, session: SessionDep) -> list[ModelVersionOut]:
    get_project(session, project_id=project_id)
    rows = session.scalars(select(ModelVersion).where(ModelVersion.project_id == project_id).order_by(ModelVersion.id))
    return [mv_out(m) for m in rows]


@router.get("/model-versions/{model_version_id}")
def get_model_version(model_version_id: IdPath, session: SessionDep) -> ModelVersionDetail:
    """Config, metrics, thresholds and the training-label snapshot (label ids)."""
    return mv_detail(_get(session, model_version_id))


@router.post("/model-versions/{model_version_id}/activate")
def activate(model_version_id: IdPath, session: SessionDep) -> ModelVersionOut:
    """Make a previous version the active one (rollback)."""
    mv = _get(session, model_version_id)
    session.execute(update(ModelVersion).where(ModelVersion.project_id == mv.project_id).values(is_active=False))
    session.flush()
    mv.is_active = True
    session.flush()
    return mv_out(mv)


@router.get("/model-versions/{model_version_id}/metrics")
def model_metrics(model_version_id: IdPath, session: SessionDep) -> dict:
    return _get(session, model_version_id).metrics


@router.get("/projects/{project_id}/metrics/series")
def metrics_series(project_id: IdPath, session: SessionDep) -> list[SeriesPoint]:
    """Per model version: label counts by kind, regime and metrics (label-efficiency curves)."""
    get_project(session, project_id=project_id)
    out = []
    for mv in session.scalars(
        select(ModelVersion).where(ModelVersion.project_id == project_id).order_by(ModelVersion.id)
    ):
        labels = session.scalars(select(Label).where(Label.id.in_(mv.label_ids or []))).all()
        out.append(
            SeriesPoint(
                model_version_id=mv.id,
                name=mv.name,
                created_at=mv.created_at,
                regime=mv.regime,
                labels_normal=sum(1 for lb in labels if lb.is_defective is False),
                labels_image=sum(1 for lb in labels if lb.is_defective and lb.mask_png is None),
                labels_mask=sum(1 for lb in labels if lb.is_defective and lb.mask_png is not None),
                metrics=mv.metrics,
            )
        )
    return out
