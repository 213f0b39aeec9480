"""Projects: creation and settings."""

from __future__ import annotations

from dataclasses import dataclass, fields

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from backend.db.tables import MaskCostModel, Project
from backend.errors import ConflictError, NotFoundError


@dataclass(frozen=True)
class ProjectSettings:
    """The editable settings of a project (None: leave unchanged)."""

    image_height: int | None = None
    image_width: int | None = None
    backbone: str | None = None
    profile: str | None = None
    cost_image_label: float | None = None
    cost_mask_label: float | None = None
    train_defaults: dict | None = None
    strategy: str | None = None
    round_budget: float | None = None
    mask_share: float | None = None
    mask_cost_model: MaskCostModel | None = None
    auto_round_labels: int | None = None


TRAIN_DEFAULT_KEYS = {
    "epochs": int,
    "perlin_threshold": float,
    "pseudo_normal_fraction": float,
    "bootstrap_refine_fraction": float,
    "min_defects_supervised": int,
}
FRACTION_KEYS = {"pseudo_normal_fraction", "bootstrap_refine_fraction"}  # 0 turns the feature off
COUNT_KEYS = {"min_defects_supervised"}  # a whole number >= 0; 0 turns the rule off


def create_project(session: Session, *, name: str, settings: ProjectSettings = ProjectSettings()) -> Project:
    project = Project(name=name)
    session.add(project)
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
    from ml.acquisition import STRATEGIES
    from ml.supersimplenet.features import BACKBONES
    from ml.train import PROFILES

    if settings.backbone is not None and settings.backbone not in BACKBONES:
        raise ValueError(f"backbone: unknown {settings.backbone!r}; choose one of {', '.join(BACKBONES)}")
    if settings.profile is not None and settings.profile not in PROFILES:
        raise ValueError(f"profile: unknown {settings.profile!r}; choose one of {', '.join(PROFILES)}")
    if settings.strategy is not None and settings.strategy not in STRATEGIES:
        raise ValueError(f"strategy: unknown {settings.strategy!r}; choose one of {', '.join(STRATEGIES)}")
    if settings.mask_share is not None and not 0 <= settings.mask_share <= 1:
        raise ValueError(f"mask_share: must lie in [0, 1], got {settings.mask_share}")
    if settings.round_budget is not None and settings.round_budget < 0:
        raise ValueError(f"round_budget: must be >= 0, got {settings.round_budget}")
    for name in ("image_height", "image_width"):
        v = getattr(settings, name)
        if v is not None and not 32 <= v <= 4096:
            raise ValueError(f"{name}: must be within 32..4096, got {v}")
    for name in ("cost_image_label", "cost_mask_label"):
        v = getattr(settings, name)
        if v is not None and v <= 0:
            raise ValueError(f"{name}: must be positive, got {v}")
    if settings.train_defaults is not None:
        for k, v in settings.train_defaults.items():
            if k not in TRAIN_DEFAULT_KEYS:
                raise ValueError(f"train_defaults.{k}: unknown; allowed: {', '.join(TRAIN_DEFAULT_KEYS)}")
            if not isinstance(v, (int, float)) or isinstance(v, bool):
                raise ValueError(f"train_defaults.{k}: must be a number, got {v!r}")  # noqa: TRY004 - every settings error is a ValueError
            if k in FRACTION_KEYS and not 0 <= v < 1:
                raise ValueError(f"train_defaults.{k}: must be within [0, 1), got {v!r}")
            if k in COUNT_KEYS and (v < 0 or v != int(v)):
                raise ValueError(f"train_defaults.{k}: must be a whole number >= 0, got {v!r}")
            if k not in FRACTION_KEYS | COUNT_KEYS and v <= 0:
                raise ValueError(f"train_defaults.{k}: must be a positive number, got {v!r}")
    for f in fields(settings):
        v = getattr(settings, f.name)
        if v is not None:
            setattr(project, f.name, v)
