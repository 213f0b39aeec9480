"""Request and response bodies."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, field_serializer

from backend.api.deps import MAX_ID
from backend.db.tables import MaskCostModel, MaskOrigin
from backend.domain.enums import AskKind, ImportLabels, ProfileName, Regime
from backend.domain.project_settings import ProjectSettings, TrainDefaults

#: a row id in a request body (out of range: 422 naming the field)
BodyId = Annotated[int, Field(ge=1, le=MAX_ID)]


#: editable project settings (absent fields stay unchanged): the domain's one schema
ProjectUpdate = ProjectSettings


class ProjectCreate(ProjectSettings):
    """A new project: its name, and any settings that differ from the defaults."""

    name: str = Field(min_length=1, max_length=200)


class ProjectOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    name: str
    image_height: int
    image_width: int
    backbone: str
    profile: ProfileName
    cost_image_label: float
    cost_mask_label: float
    train_defaults: TrainDefaults
    strategy: str
    round_budget: float
    mask_share: float
    mask_cost_model: MaskCostModel
    auto_round_labels: int | None = None
    ls_project_id: int | None = None
    created_at: datetime

    @field_serializer("train_defaults")
    def _set_defaults_only(self, value: TrainDefaults) -> dict[str, int | float]:
        """Only the overrides the project sets (an unset one takes the built-in default)."""
        return value.model_dump(exclude_none=True)


class ImportRequest(BaseModel):
    path: str = Field(
        min_length=1, max_length=4096, description="A folder (or labels CSV) on the server, under an import root."
    )
    labels: ImportLabels = Field(
        default=ImportLabels.ALL,
        description="For a labelled dataset: import every label (all); only the test split's, the rest going "
        "into the pool unlabelled as on a new line (test); or none (every image into the pool).",
    )


class ImportResultOut(BaseModel):
    file: str
    status: str
    reason: str | None = None
    image_id: int | None = None


class ImportSummary(BaseModel):
    imported: int
    duplicate: int
    rejected: int
    results: list[ImportResultOut]


class ImageOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    project_id: int
    uri: str
    sha256: str
    width: int
    height: int
    split: str
    added_at: datetime


class LabelOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    image_id: int
    is_defective: bool | None
    has_mask: bool
    retracted: bool
    source: str
    annotator: str | None
    ls_annotation_id: int | None
    lead_time: float | None
    review_reason: str | None
    created_at: datetime
    kind: str = Field(description="normal, image (defective, image-level), mask, unknown (flagged) or retracted")
    mask_origin: MaskOrigin | None = Field(
        default=None,
        description="A mask answered on a mask task: its proposal accepted unchanged, edited, or drawn without one.",
    )
    proposal_iou: float | None = Field(default=None, description="IoU of the answered mask and the task's proposal.")
    mask_edit: float | None = Field(
        default=None, description="Share of the answered mask that differs from the proposal (at most 1; drawn: 1)."
    )


class LabelHistory(BaseModel):
    current: LabelOut | None
    history: list[LabelOut]


class LabelCounts(BaseModel):
    images: int
    labelled: int
    normal: int
    image_level: int
    mask: int
    review: int = Field(default=0, description="Answers stored but flagged for a human look (no readable verdict).")
    by_source: dict[str, int]


class JobOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    kind: str
    project_id: int
    status: str
    progress: float
    message: str
    error: str | None
    result: dict
    cancel_requested: bool
    heartbeat_at: datetime | None
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None


class ModelVersionOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    project_id: int
    round_id: int | None
    name: str
    regime: Regime
    profile: str  # a ProfileName, or an experiment's own profile
    artifact_sha256: str
    thresholds: dict
    metrics: dict
    is_active: bool
    created_at: datetime
    n_labels: int


class ModelVersionDetail(ModelVersionOut):
    config: dict
    label_ids: list[int]


class SeriesPoint(BaseModel):
    model_version_id: int
    name: str
    created_at: datetime
    regime: str
    labels_normal: int
    labels_image: int
    labels_mask: int
    metrics: dict


class PushRequest(BaseModel):
    """A ranked batch for Label Studio: ``image_ids`` best first."""

    image_ids: list[BodyId] = Field(min_length=1, max_length=20000)
    asks: dict[BodyId, AskKind] = Field(default_factory=dict, description="Per image: 'verdict' (default) or 'mask'.")
    include_labelled: bool = Field(default=False, description="Also send images that already have a human label.")


class LinksRequest(BaseModel):
    rotate: bool = Field(
        default=False,
        description="First give the project a new link key: every signed link handed out before stops working.",
    )
